"""Composition root: builds the Redis client, the hub, its feed, the gRPC server and the WebSocket
channels; owns them."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import BlockingConnectionPool, Redis

from exchange.v1 import streams_pb2, streams_pb2_grpc
from mockex.auth import ApiKeyAuthenticator
from mockex.caches import reconnecting
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.settings import shown_url
from stream_svc.config import StreamConfig
from stream_svc.fanout import CloseReason, FanoutHub
from stream_svc.feed import BookReader, EventFeed
from stream_svc.servicer import StreamServicer
from stream_svc.websocket import WebSocketChannels

log = logging.getLogger("stream_svc")

READINESS_EVERY_SECONDS = 0.25
FEED_START_TIMEOUT_SECONDS = 5.0
"""How long start waits for the first subscription (so tests and a first client find it live)."""
SERVICE_NAME = streams_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name


class StreamApp:
    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.hub = FanoutHub(config.queue_size)
        self._redis: Redis | None = None
        self._feed: EventFeed | None = None
        self._server: GrpcServer | None = None
        self._websocket: WebSocketChannels | None = None
        self._readiness: asyncio.Task | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port (the real one when the address asked for port 0)."""
        assert self._server is not None, "StreamApp is not started"
        return self._server.port

    @property
    def ws_port(self) -> int:
        """The bound WebSocket port (the real one when the address asked for port 0)."""
        assert self._websocket is not None, "StreamApp is not started"
        return self._websocket.port

    async def start(self) -> None:
        """Readiness is SERVING only while the feed is subscribed, so no subscriber a load
        balancer sends here misses a batch; the feed reconnects by itself."""
        # A connect storm waits for a pooled connection (bounded) instead of failing when all
        # are busy; the feed holds one for good.
        pool = BlockingConnectionPool.from_url(
            self.config.redis_url,
            max_connections=self.config.redis_connections,
            timeout=self.config.redis_wait_seconds,
            **reconnecting(),
        )
        self._redis = Redis(connection_pool=pool)
        self._feed = EventFeed(self._redis, self.hub)
        await self._feed.start()
        try:
            await self._feed.wait_connected(FEED_START_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning(
                "redis not reachable at %s; serving, NOT_SERVING until it is",
                shown_url(self.config.redis_url),
            )
        authenticator = ApiKeyAuthenticator(self._redis, self.config.admin_key)
        books = BookReader(self._redis)
        servicer = StreamServicer(self.hub, self._redis, authenticator, books)
        self._server = await start_grpc_server(
            self.config.grpc_address,
            lambda server: streams_pb2_grpc.add_StreamServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            serving=False,
            share_port=self.config.share_port,
            process_address=self.config.process_address,
        )
        self._websocket = WebSocketChannels(self.hub, self._redis, authenticator, books)
        await self._websocket.start(self.config.ws_address, reuse_port=self.config.share_port)
        self._readiness = asyncio.create_task(self._report_readiness(), name="stream-readiness")
        host = self.config.grpc_address.rsplit(":", 1)[0]
        ws_host = self.config.ws_address.rsplit(":", 1)[0]
        log.info("stream_svc serving grpc=%s:%d ws=%s:%d", host, self.port, ws_host, self.ws_port)

    async def _report_readiness(self) -> None:
        assert self._server is not None and self._feed is not None
        while True:
            await self._server.set_serving(self._feed.connected)
            await asyncio.sleep(READINESS_EVERY_SECONDS)

    async def wait(self) -> None:
        """Serves until stopped: the feed heals by itself."""
        await asyncio.Event().wait()

    async def stop(self, grace: float = 2.0) -> None:
        """Open streams end at once (gRPC UNAVAILABLE, WebSocket 1001) rather than lingering
        through the grace."""
        if self._readiness is not None:
            self._readiness.cancel()
            await asyncio.gather(self._readiness, return_exceptions=True)
        if self._server is not None:
            await self._server.set_serving(False)
        self.hub.close_all(CloseReason.SHUTTING_DOWN)
        if self._websocket is not None:
            await self._websocket.stop()
        if self._server is not None:
            await self._server.stop(grace)
        if self._feed is not None:
            await self._feed.stop()
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
