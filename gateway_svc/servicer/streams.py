"""StreamService on the gateway's port: forwarded to stream_svc with the caller's API key, so
port 50051 offers every service of the contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from exchange.v1 import streams_pb2_grpc
from mockex.auth import API_KEY_METADATA, api_key_from_metadata


class StreamProxy(streams_pb2_grpc.StreamServiceServicer):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = streams_pb2_grpc.StreamServiceStub(channel)

    async def _forward(self, call, context) -> AsyncIterator:
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "stream ended")

    def _metadata(self, context) -> tuple[tuple[str, str], ...]:
        api_key = api_key_from_metadata(context.invocation_metadata())
        return ((API_KEY_METADATA, api_key),) if api_key else ()

    async def StreamMarketData(self, request, context):
        call = self.stub.StreamMarketData(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message

    async def StreamOrderUpdates(self, request, context):
        call = self.stub.StreamOrderUpdates(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message

    async def StreamExchangeEvents(self, request, context):
        call = self.stub.StreamExchangeEvents(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message
