"""Composition root of the gateway: Redis, the engine client, store and stream channels, gRPC."""

from __future__ import annotations

import grpc
from redis.asyncio import BlockingConnectionPool, Redis

from exchange.internal.v1 import store_pb2_grpc
from exchange.v1 import (
    accounts_pb2_grpc,
    admin_pb2_grpc,
    market_pb2_grpc,
    orders_pb2_grpc,
    streams_pb2_grpc,
)
from gateway_svc.config import GatewayConfig
from gateway_svc.engine_client import EngineClient
from gateway_svc.servicer import (
    SERVICE_NAMES,
    AccountServicer,
    AdminServicer,
    BookServicer,
    Exchange,
    ExchangeHealthServicer,
    OrderServicer,
    StreamProxy,
    TradeServicer,
)
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.telemetry import setup_tracing


class GatewayApp:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        setup_tracing("gateway_svc")
        # Requests wait for a free connection instead of failing with "Too many connections"
        # when a backlog forms (the default pool raises at 100).
        self.redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                config.redis_url, max_connections=256, timeout=config.engine_timeout_seconds
            )
        )
        self.engine = EngineClient(self.redis, config.commands_stream, config.gateway_id)
        self.store_channel = grpc.aio.insecure_channel(config.store_address)
        self.stream_channel = grpc.aio.insecure_channel(config.stream_address)
        self.exchange = Exchange(
            config, self.redis, self.engine, store_pb2_grpc.StoreServiceStub(self.store_channel)
        )
        self.grpc: GrpcServer | None = None

    async def start(self) -> None:
        await self.engine.start()
        exchange = self.exchange

        def register(server: grpc.aio.Server) -> None:
            orders_pb2_grpc.add_OrderServiceServicer_to_server(OrderServicer(exchange), server)
            market_pb2_grpc.add_BookServiceServicer_to_server(BookServicer(exchange), server)
            market_pb2_grpc.add_TradeServiceServicer_to_server(TradeServicer(exchange), server)
            accounts_pb2_grpc.add_AccountServiceServicer_to_server(
                AccountServicer(exchange), server
            )
            accounts_pb2_grpc.add_HealthServiceServicer_to_server(
                ExchangeHealthServicer(exchange), server
            )
            admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(exchange), server)
            streams_pb2_grpc.add_StreamServiceServicer_to_server(
                StreamProxy(self.stream_channel), server
            )

        self.grpc = await start_grpc_server(self.config.grpc_address, register, SERVICE_NAMES)

    async def stop(self) -> None:
        if self.grpc:
            await self.grpc.stop()
        await self.engine.stop()
        await self.store_channel.close()
        await self.stream_channel.close()
        await self.redis.aclose()
