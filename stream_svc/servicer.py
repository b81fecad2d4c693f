"""StreamService: checks the request, subscribes to the hub, writes what the hub delivers.

Each call writes from a task of its own while the handler watches the subscription: a client
that stops reading blocks that write, and the hub's cut-off must still end the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError

from exchange.v1 import streams_pb2, streams_pb2_grpc
from mockex.auth import ApiKeyAuthenticator, api_key_from_metadata
from mockex.caches import CachesIncomplete
from stream_svc.fanout import CloseReason, FanoutHub, Subscription
from stream_svc.feed import BookReader
from stream_svc.marketdata import MarketDataView, unknown_symbols

Context = grpc.aio.ServicerContext[Any, Any]


class StreamServicer(streams_pb2_grpc.StreamServiceServicer):
    def __init__(
        self,
        hub: FanoutHub,
        redis: Redis,
        authenticator: ApiKeyAuthenticator,
        books: BookReader,
    ) -> None:
        self._hub = hub
        self._redis = redis
        self._authenticator = authenticator
        self._books = books

    async def StreamMarketData(
        self, request: streams_pb2.StreamMarketDataRequest, context: Context
    ) -> None:
        symbols = list(dict.fromkeys(request.symbols))
        if not symbols:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "symbols: name at least one symbol"
            )
        try:
            unknown = await unknown_symbols(self._hub, self._redis, symbols)
        except RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"symbols unavailable: {exc}")
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"symbols: unknown symbol {', '.join(repr(symbol) for symbol in unknown)}",
            )
        view = MarketDataView(self._hub, self._books)
        await self._serve(view.subscription, _write_market(view, symbols, context), context)

    async def StreamOrderUpdates(
        self, request: streams_pb2.StreamOrderUpdatesRequest, context: Context
    ) -> None:
        api_key = api_key_from_metadata(context.invocation_metadata())
        try:
            caller = await self._authenticator.caller(api_key)
        except CachesIncomplete as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"authentication unavailable: {exc}")
        if caller is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "x-api-key: missing or unknown API key"
            )
        subscription = self._hub.subscribe_orders(caller.user_id)
        await self._serve(subscription, _write_all(subscription, context), context)

    async def StreamExchangeEvents(
        self, request: streams_pb2.StreamExchangeEventsRequest, context: Context
    ) -> None:
        subscription = self._hub.subscribe_exchange()
        await self._serve(subscription, _write_all(subscription, context), context)

    async def _serve(
        self,
        subscription: Subscription[Any],
        write: Coroutine[Any, Any, None],
        context: Context,
    ) -> None:
        """Run `write` until the client leaves or the hub closes the subscription."""
        writer = asyncio.ensure_future(write)
        closed = asyncio.ensure_future(subscription.closed.wait())
        try:
            await asyncio.wait((writer, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hub.unsubscribe(subscription)
            writer.cancel()
            closed.cancel()
            await asyncio.gather(writer, closed, return_exceptions=True)
        error = None if writer.cancelled() else writer.exception()
        if isinstance(error, CachesIncomplete):
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        if isinstance(error, RedisError):
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"market data unavailable: {error}")
        if error is not None:
            raise error
        assert subscription.close_reason is not None
        await context.abort(*self._status(subscription.close_reason))

    def _status(self, reason: CloseReason) -> tuple[grpc.StatusCode, str]:
        if reason is CloseReason.FELL_BEHIND:
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"client fell behind: {self._hub.queue_size} batches of updates were waiting "
                "unread; subscribe again for a fresh snapshot",
            )
        if reason is CloseReason.FEED_LOST:
            return (
                grpc.StatusCode.UNAVAILABLE,
                "the exchange's event feed was interrupted; subscribe again",
            )
        return grpc.StatusCode.UNAVAILABLE, "the stream service is shutting down"


async def _write_market(view: MarketDataView, symbols: list[str], context: Context) -> None:
    """Snapshots first; then only what each snapshot does not already hold (and fresh
    snapshots after a feed loss)."""
    for snapshot in await view.subscribe(symbols):
        await context.write(snapshot)
    while True:
        for update in await view.next_messages():
            await context.write(update)


async def _write_all(subscription: Subscription[Any], context: Context) -> None:
    """Headers first, which tell the client it is subscribed: an order session waits for them
    before it takes its first request, so it misses none of its fills."""
    await context.send_initial_metadata(())
    while True:
        for response in await subscription.get():
            await context.write(response)
