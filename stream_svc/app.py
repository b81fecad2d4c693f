"""Composition root: builds the Redis client, the hub, its feed, the gRPC server and the WebSocket
channels; owns them."""

from __future__ import annotations

from redis.asyncio import Redis

from exchange.v1 import streams_pb2, streams_pb2_grpc
from mockex.auth import ApiKeyAuthenticator
from mockex.grpc_server import GrpcServer, start_grpc_server
from stream_svc.config import StreamConfig
from stream_svc.fanout import CloseReason, FanoutHub
from stream_svc.feed import EventFeed
from stream_svc.servicer import StreamServicer
from stream_svc.websocket import WebSocketChannels

SERVICE_NAME = streams_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name


class StreamApp:
    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.hub = FanoutHub(config.queue_size)
        self._redis: Redis | None = None
        self._feed: EventFeed | None = None
        self._server: GrpcServer | None = None
        self._websocket: WebSocketChannels | None = None

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
        """The feed is live before the server answers, so no subscriber misses a batch."""
        self._redis = Redis.from_url(self.config.redis_url)
        self._feed = EventFeed(self._redis, self.hub)
        await self._feed.start()
        authenticator = ApiKeyAuthenticator(self._redis, self.config.admin_key)
        servicer = StreamServicer(self.hub, self._redis, authenticator)
        self._server = await start_grpc_server(
            self.config.grpc_address,
            lambda server: streams_pb2_grpc.add_StreamServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
        )
        self._websocket = WebSocketChannels(self.hub, self._redis, authenticator)
        await self._websocket.start(self.config.ws_address)

    async def stop(self, grace: float = 2.0) -> None:
        """Open streams end at once (gRPC UNAVAILABLE, WebSocket 1001) rather than lingering
        through the grace."""
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
            await self._redis.aclose()
