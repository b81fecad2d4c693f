"""One subscriber's market data, for the gRPC stream and the WebSocket channel alike: subscribe,
then read the snapshot, then pass on only the deltas the snapshot does not already hold.

Subscribing before reading the snapshot means nothing that happens in between is lost: it waits
in the subscription's queue, and what the snapshot already reflects (a sequence at or below the
snapshot's) is dropped. The engine writes a book to Redis before it publishes the batch that
changed it, so a snapshot is never older than a delta already delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from exchange.v1 import streams_pb2
from stream_svc.fanout import FanoutHub, Subscription
from stream_svc.feed import load_tick_sizes, read_books
from stream_svc.messages import MarketMessage, book_snapshot

MarketEntry = tuple[MarketMessage, ...]
"""What the hub queues for one engine batch."""


async def unknown_symbols(hub: FanoutHub, redis: Redis, symbols: Sequence[str]) -> list[str]:
    """Symbols listed in neither memory nor Redis (re-read once: it may be a new symbol)."""
    if all(symbol in hub.tick_sizes for symbol in symbols):
        return []
    hub.tick_sizes.update(await load_tick_sizes(redis))
    return [symbol for symbol in symbols if symbol not in hub.tick_sizes]


class MarketDataView:
    """The symbols one subscriber follows, each with the sequence of the snapshot it was sent.

    Owned by one task: `subscribe` must run in the task that reads the subscription's entries,
    between two reads, so that no entry is passed on while a snapshot is being taken.
    """

    def __init__(self, hub: FanoutHub, redis: Redis) -> None:
        self._hub = hub
        self._redis = redis
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
        books = await read_books(self._redis, new)
        for book in books:
            self._snapshot_sequences[book.symbol] = book.sequence
        return [book_snapshot(book) for book in books]

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Nothing more of these symbols is passed on, even what is already queued."""
        symbols = list(symbols)
        self._hub.remove_market_symbols(self.subscription, symbols)
        for symbol in symbols:
            self._snapshot_sequences.pop(symbol, None)

    def updates(self, entry: MarketEntry) -> list[streams_pb2.StreamMarketDataResponse]:
        """The messages of a queued entry that come after their symbol's snapshot."""
        updates = []
        for message in entry:
            snapshot_sequence = self._snapshot_sequences.get(message.symbol)
            if snapshot_sequence is not None and message.sequence > snapshot_sequence:
                updates.append(message.response)
        return updates

    async def next_updates(self) -> list[streams_pb2.StreamMarketDataResponse]:
        """The next queued entry's updates (possibly none); waits for an entry."""
        return self.updates(await self.subscription.get())
