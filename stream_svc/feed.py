"""Everything the stream service reads from Redis: the event feed, symbols and book snapshots.

The feed is the hub's single pub/sub subscription. A message lost on the way would leave every
subscriber with a silent gap, so once the connection is back after a break (redis-py resubscribes
by itself on reconnect, and we see the new confirmation) market subscribers re-read their
snapshots and the others are closed with UNAVAILABLE (FanoutHub.feed_restored).

Snapshot reads are coalesced (BookReader): a thousand subscribers arriving together cost a few
MGETs, not a pooled Redis connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex import names
from mockex.caches import check_complete
from stream_svc.fanout import DEFAULT_TICK_SIZE, FanoutHub
from stream_svc.messages import book_snapshot

log = logging.getLogger(__name__)

CHANNELS = (names.EVENTS_CHANNEL, names.EXCHANGE_EVENTS_CHANNEL)
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


class BookReader:
    """Book snapshots for many subscribers from one read.

    A read serves every request made before it started, and only those: a subscriber asks
    after subscribing, so its snapshot is never older than the first delta it was queued. While
    one read is in flight the requests that arrive wait for the next, which covers them all.
    Every caller of one read gets the same response objects, so each is encoded once.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[dict[str, streams_pb2.StreamMarketDataResponse]] | None = None
        self._next_symbols: dict[str, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reads = 0
        """MGETs made (what the coalescing saves shows in tests and benchmarks)."""

    async def snapshots(self, symbols: Iterable[str]) -> list[streams_pb2.StreamMarketDataResponse]:
        """A snapshot (BookUpdate, snapshot=true) per symbol, in order, read after this call."""
        symbols = list(symbols)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next_symbols = {}
            task = asyncio.create_task(self._read(self._next), name="stream-book-read")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._next_symbols.update(dict.fromkeys(symbols))
        books = await asyncio.shield(self._next)
        return [books[symbol] for symbol in symbols]

    async def _read(
        self, future: asyncio.Future[dict[str, streams_pb2.StreamMarketDataResponse]]
    ) -> None:
        async with self._lock:
            # From here on, requests wait for the next read.
            self._next = None
            symbols = list(self._next_symbols)
            self.reads += 1
            try:
                books = await read_books(self._redis, symbols)
            except Exception as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: callers that gave up must not log it
                return
            future.set_result({book.symbol: book_snapshot(book) for book in books})


class EventFeed:
    """Reads EngineBatches and exchange events from Redis pub/sub into the hub, reconnecting by
    itself; `connected` says whether it is subscribed now (the service's readiness)."""

    def __init__(self, redis: Redis, hub: FanoutHub) -> None:
        self._redis = redis
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self._resubscribed = 0
        """Channels confirmed again since redis-py reconnected the pub/sub by itself."""
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
                    # Subscribers missed what was published while the feed was away.
                    log.info("event feed subscribed again after %d failed attempts", failures)
                    self._hub.feed_restored()
                failures = 0
                self._resubscribed = 0
                self.connected = True
                async for message in pubsub.listen():
                    await self._handle(message)
            except (RedisError, OSError, TimeoutError) as exc:
                self.connected = False
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("event feed lost error=%r attempt=%d", exc, failures)
                await asyncio.sleep(min(RECONNECT_DELAY_SECONDS * failures, 5.0))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe (confirmed) before loading symbols, so no SymbolAdded falls in between."""
        await pubsub.subscribe(*CHANNELS)
        confirmed = 0
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
            while confirmed < len(CHANNELS):
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
        self._hub.tick_sizes.update(await load_tick_sizes(self._redis))

    async def _handle(self, message: dict) -> None:
        if message["type"] == "subscribe":
            # One confirmation per channel: resynchronise once, when every channel is back.
            self._resubscribed += 1
            if self._resubscribed == len(CHANNELS):
                self._resubscribed = 0
                log.warning("event feed resubscribed after a reconnect; resynchronising")
                self._hub.feed_restored()
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
