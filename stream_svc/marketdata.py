"""One subscriber's market data, for the gRPC stream and the WebSocket channel alike: subscribe,
then read the snapshot, then pass on only the deltas the snapshot does not already hold.

Subscribing before reading the snapshot means nothing that happens in between is lost: it waits
in the subscription's queue, and what the snapshot already reflects (a sequence at or below the
snapshot's) is dropped. The engine writes a book to Redis before it publishes the batch that
changed it, so a snapshot is never older than a delta already delivered.

After a feed loss the hub queues FEED_RESTORED: the view reads every followed symbol's snapshot
again and sends it (snapshot=true, the book's own sequence), then the deltas after it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from exchange.v1 import streams_pb2
from mockex.caches import CachesIncomplete
from stream_svc.fanout import FanoutHub, FeedRestored, Subscription
from stream_svc.feed import BookReader, load_tick_sizes
from stream_svc.messages import MarketMessage

MarketEntry = tuple[MarketMessage | FeedRestored, ...]
"""What the hub queues for one engine batch, or FEED_RESTORED alone."""

RESYNC_TIMEOUT_SECONDS = 30.0
"""How long a resynchronisation waits for Redis to answer with complete books (the engine
rewrites them after a Redis restart); then the subscriber is closed as for a failed read."""
RESYNC_RETRY_SECONDS = 0.25
"""Mean pause between two snapshot reads of a resynchronisation (jittered ±50%)."""


async def unknown_symbols(hub: FanoutHub, redis: Redis, symbols: Sequence[str]) -> list[str]:
    """Symbols listed in neither memory nor Redis (re-read once: it may be a new symbol)."""
    if all(symbol in hub.tick_sizes for symbol in symbols):
        return []
    hub.tick_sizes.update(await load_tick_sizes(redis))
    return [symbol for symbol in symbols if symbol not in hub.tick_sizes]


class MarketDataView:
    """The symbols one subscriber follows, each with the sequence of the snapshot it was sent.

    Owned by one task: `subscribe` and `messages` must run in the task that reads the
    subscription's entries, between two reads, so no entry is passed on while a snapshot is
    being taken.
    """

    def __init__(self, hub: FanoutHub, books: BookReader) -> None:
        self._hub = hub
        self._books = books
        self.subscription: Subscription[MarketMessage] = hub.subscribe_market()
        self._snapshot_sequences: dict[str, int] = {}

    @property
    def symbols(self) -> list[str]:
        return list(self._snapshot_sequences)

    async def subscribe(self, symbols: Iterable[str]) -> list[streams_pb2.StreamMarketDataResponse]:
        """Book snapshots of the symbols not followed yet (none for those already followed)."""
        followed = self._snapshot_sequences
        new = [symbol for symbol in dict.fromkeys(symbols) if symbol not in followed]
        if not new:
            return []
        self._hub.add_market_symbols(self.subscription, new)
        return self._followed(await self._books.snapshots(new))

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Nothing more of these symbols is passed on, even what is already queued."""
        symbols = list(symbols)
        self._hub.remove_market_symbols(self.subscription, symbols)
        for symbol in symbols:
            self._snapshot_sequences.pop(symbol, None)

    async def messages(self, entry: MarketEntry) -> list[streams_pb2.StreamMarketDataResponse]:
        """What a queued entry gives the client: the updates after their symbol's snapshot, or
        fresh snapshots of every followed symbol for FEED_RESTORED."""
        if entry and isinstance(entry[0], FeedRestored):
            return await self._resync()
        updates = []
        for message in entry:
            assert isinstance(message, MarketMessage)
            snapshot_sequence = self._snapshot_sequences.get(message.symbol)
            if snapshot_sequence is not None and message.sequence > snapshot_sequence:
                updates.append(message.response)
        return updates

    async def next_messages(self) -> list[streams_pb2.StreamMarketDataResponse]:
        """The next queued entry's messages (possibly none); waits for an entry."""
        return await self.messages(await self.subscription.get())

    async def _resync(self) -> list[streams_pb2.StreamMarketDataResponse]:
        """Snapshots again, retried (jittered, so a thousand views do not read in step) while
        Redis is away or still being refilled."""
        symbols = self.symbols
        if not symbols:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESYNC_TIMEOUT_SECONDS
        while True:
            try:
                return self._followed(await self._books.snapshots(symbols))
            except (CachesIncomplete, RedisError):
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(RESYNC_RETRY_SECONDS * random.uniform(0.5, 1.5))

    def _followed(
        self, snapshots: list[streams_pb2.StreamMarketDataResponse]
    ) -> list[streams_pb2.StreamMarketDataResponse]:
        for snapshot in snapshots:
            self._snapshot_sequences[snapshot.book.symbol] = snapshot.book.sequence
        return snapshots
