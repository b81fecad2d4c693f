"""Everything the stream service reads from Redis: the event feed, symbols and book snapshots.

The feed is the hub's single pub/sub subscription. A message lost on the way would leave every
subscriber with a silent gap, so when the connection breaks (redis-py resubscribes by itself on
reconnect, and we see the new confirmation) every subscription is closed with UNAVAILABLE and
clients subscribe again for fresh snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex import names
from mockex.caches import check_complete
from stream_svc.fanout import DEFAULT_TICK_SIZE, CloseReason, FanoutHub

log = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 1.0
SUBSCRIBE_TIMEOUT_SECONDS = 10.0


async def publish_exchange_event(redis: Redis, event: streams_pb2.ExchangeEvent) -> int:
    """Tell every stream service's subscribers; returns how many stream services listened."""
    return await redis.publish(names.EXCHANGE_EVENTS_CHANNEL, event.SerializeToString())


async def load_tick_sizes(redis: Redis) -> dict[str, float]:
    raw = await redis.hgetall(names.SYMBOLS_KEY)
    return {
        symbol.decode(): types_pb2.SymbolInfo.FromString(info).tick_size or DEFAULT_TICK_SIZE
        for symbol, info in raw.items()
    }


async def read_books(redis: Redis, symbols: Sequence[str]) -> list[types_pb2.OrderBook]:
    """Full-depth books in one round trip. Every listed symbol has one once the engine has
    written its caches, so a missing book means they are being rebuilt (CachesIncomplete):
    never an empty book at sequence 0, which would be false market data."""
    raw_books = await redis.mget([names.book_key(symbol) for symbol in symbols])
    if not all(raw_books):
        await check_complete(redis)
    books = []
    for symbol, raw in zip(symbols, raw_books, strict=True):
        book = types_pb2.OrderBook.FromString(raw) if raw else types_pb2.OrderBook()
        book.symbol = symbol
        books.append(book)
    return books


class EventFeed:
    """Reads EngineBatches and exchange events from Redis pub/sub into the hub, reconnecting by
    itself; `connected` says whether it is subscribed now (the service's readiness)."""

    def __init__(self, redis: Redis, hub: FanoutHub) -> None:
        self._redis = redis
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    async def start(self) -> None:
        """Does not wait for Redis: a stream service started during an outage heals by itself."""
        self._task = asyncio.create_task(self._run(), name="stream-event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not self.connected:
                await asyncio.sleep(0.02)

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._subscribe(pubsub)
                if failures:
                    # Streams opened while the feed was away missed what was published meanwhile.
                    log.info("event feed subscribed again after %d failed attempts", failures)
                    self._hub.close_all(CloseReason.FEED_LOST)
                failures = 0
                self.connected = True
                async for message in pubsub.listen():
                    await self._handle(message)
            except (RedisError, OSError, TimeoutError) as exc:
                self.connected = False
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("event feed lost error=%r attempt=%d", exc, failures)
                self._hub.close_all(CloseReason.FEED_LOST)
                await asyncio.sleep(min(RECONNECT_DELAY_SECONDS * failures, 5.0))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe (confirmed) before loading symbols, so no SymbolAdded falls in between."""
        channels = (names.EVENTS_CHANNEL, names.EXCHANGE_EVENTS_CHANNEL)
        await pubsub.subscribe(*channels)
        confirmed = 0
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
            while confirmed < len(channels):
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
        self._hub.tick_sizes.update(await load_tick_sizes(self._redis))

    async def _handle(self, message: dict) -> None:
        if message["type"] == "subscribe":
            log.warning("event feed resubscribed after a reconnect; closing every subscription")
            self._hub.close_all(CloseReason.FEED_LOST)
            return
        if message["type"] != "message":
            return
        channel = message["channel"].decode()
        try:
            if channel == names.EVENTS_CHANNEL:
                await self._publish_batch(engine_pb2.EngineBatch.FromString(message["data"]))
            elif channel == names.EXCHANGE_EVENTS_CHANNEL:
                self._hub.publish_exchange_event(
                    streams_pb2.ExchangeEvent.FromString(message["data"])
                )
        except RedisError:
            raise
        except Exception:
            # One bad message must not stop the fan-out for everybody.
            log.exception("event feed message skipped channel=%s", channel)

    async def _publish_batch(self, batch: engine_pb2.EngineBatch) -> None:
        unknown = self._hub.unknown_symbols(batch)
        if unknown:
            self._hub.tick_sizes.update(await load_tick_sizes(self._redis))
            for symbol in unknown - self._hub.tick_sizes.keys():
                log.warning("symbol not in redis symbol=%s tick_size=%s", symbol, DEFAULT_TICK_SIZE)
                self._hub.tick_sizes[symbol] = DEFAULT_TICK_SIZE
        self._hub.publish_batch(batch)
