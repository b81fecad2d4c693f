"""Composition root of the gateway: Redis, the engine client, store and stream channels, gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from exchange.internal.v1 import simulator_pb2_grpc, store_pb2_grpc
from gateway_svc import servicer
from gateway_svc.client_address import AddressLimits
from gateway_svc.config import GatewayConfig
from gateway_svc.engine_client import EngineClient
from gateway_svc.exchange import Exchange
from gateway_svc.interceptors import GatewayInterceptor
from gateway_svc.rate_limit import TokenBucketLimiter
from mockex.auth import ApiKeyAuthenticator
from mockex.caches import CachesIncomplete, reconnecting
from mockex.grpc_server import GrpcServer, start_grpc_server

log = logging.getLogger("gateway_svc")

READINESS_EVERY_SECONDS = 0.5


class GatewayApp:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # Requests wait for a free connection instead of failing with "Too many connections"
        # when a backlog forms (the default pool raises at 100).
        self.redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                config.redis_url,
                **reconnecting(max_connections=256, timeout=config.engine_timeout_seconds),
            )
        )
        self.engine = EngineClient(
            self.redis,
            config.commands_stream,
            config.gateway_id,
            config.max_commands_in_stream,
            config.max_pending_commands,
        )
        self.store_channel = grpc.aio.insecure_channel(config.store_address)
        self.stream_channel = grpc.aio.insecure_channel(config.stream_address)
        self.simulator_channel = grpc.aio.insecure_channel(config.simulator_address)
        self.exchange = Exchange(
            config,
            self.redis,
            self.engine,
            store_pb2_grpc.StoreServiceStub(self.store_channel),
            simulator_pb2_grpc.SimulatorServiceStub(self.simulator_channel),
        )
        self.grpc: GrpcServer | None = None
        self._readiness: asyncio.Task | None = None

    async def start(self) -> None:
        await self.engine.start()
        self.limiter = TokenBucketLimiter(
            self.config.rate_limit_per_second, self.config.rate_limit_burst
        )
        config = self.config
        address_limits = AddressLimits(
            public=TokenBucketLimiter(
                config.public_rate_limit_per_second, config.public_rate_limit_burst
            ),
            failed_auth=TokenBucketLimiter(config.failed_auth_per_second, config.failed_auth_burst),
            trusted_proxies=config.trusted_proxies,
        )
        interceptor = GatewayInterceptor(
            ApiKeyAuthenticator(self.redis, config.admin_key),
            self.limiter,
            address_limits,
            config.request_log,
        )
        self.grpc = await start_grpc_server(
            self.config.grpc_address,
            lambda server: servicer.register(server, self.exchange, self.stream_channel),
            servicer.SERVICE_NAMES,
            interceptors=[interceptor],
            serving=False,
            share_port=self.config.share_port,
            process_address=self.config.process_address,
        )
        self._readiness = asyncio.create_task(self._report_readiness(), name="gateway-readiness")
        host = self.config.grpc_address.rsplit(":", 1)[0]
        session = self.engine.session_id
        log.info("gateway_svc serving grpc=%s:%d session=%s", host, self.grpc.port, session)

    async def _report_readiness(self) -> None:
        """Readiness follows whether orders can be taken; liveness stays SERVING. The message
        rate the exchange's rules set (when they set one) replaces the configured one."""
        assert self.grpc is not None
        while True:
            ready = not self.engine.unavailable_reason() and self.engine.views_ready
            await self.grpc.set_serving(ready)
            with contextlib.suppress(RedisError, OSError, CachesIncomplete):
                rate = (await self.exchange.settings()).message_rate_per_second
                if rate:
                    self.limiter.set_rate(rate, 2 * rate)
                else:
                    self.limiter.set_rate(
                        self.config.rate_limit_per_second, self.config.rate_limit_burst
                    )
            await asyncio.sleep(READINESS_EVERY_SECONDS)

    async def wait(self) -> None:
        """The gateway has no work of its own that can fail: it serves until stopped."""
        await asyncio.Event().wait()

    async def stop(self) -> None:
        if self._readiness:
            self._readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness
        if self.grpc:
            await self.grpc.stop()
        await self.engine.stop()
        await self.store_channel.close()
        await self.stream_channel.close()
        await self.simulator_channel.close()
        await self.redis.aclose()
