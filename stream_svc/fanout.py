"""The in-memory hub: every engine batch is turned into public messages once and handed to the
subscribers that want them, each through its own bounded queue.

No I/O here: the Redis reader (feed.py) calls `publish_batch`; the gRPC servicer and the
WebSocket channels read subscriptions. A subscriber whose queue is full is dropped on the spot,
so one slow client never holds back the reader or anybody else.

When the feed was lost and is back, market subscribers stay: each gets FEED_RESTORED in its
queue and re-reads its books' snapshots (docs/websockets.md, "Feed loss"), so a Redis restart
does not cut every client at once and make them all reconnect together.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2
from stream_svc.messages import MarketMessage, batch_messages

log = logging.getLogger(__name__)

DEFAULT_TICK_SIZE = 0.01
"""For a symbol with sequenced events that Redis does not list (should not happen)."""

T = TypeVar("T")


class CloseReason(enum.Enum):
    FELL_BEHIND = "fell behind"
    FEED_LOST = "event feed lost"
    SHUTTING_DOWN = "shutting down"


class FeedRestored:
    """The marker queued for market subscribers when the feed is back after a loss."""


FEED_RESTORED = FeedRestored()


class Subscription(Generic[T]):
    """One client's buffer; an entry holds that client's messages from one engine batch (or,
    for market data, FEED_RESTORED alone)."""

    def __init__(self, queue_size: int, resyncs: bool = False) -> None:
        self.resyncs = resyncs
        """Market data: resynchronised from snapshots after a feed loss instead of closed."""
        self.topics: set[str] = set()
        """Changed through the hub only, which indexes subscriptions by topic."""
        self._queue: asyncio.Queue[tuple[T, ...]] = asyncio.Queue(queue_size)
        self.closed = asyncio.Event()
        self.close_reason: CloseReason | None = None

    def offer(self, entry: tuple[T, ...]) -> bool:
        """Queue without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            return False
        return True

    async def get(self) -> tuple[T, ...]:
        return await self._queue.get()

    def close(self, reason: CloseReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.closed.set()


def market_topic(symbol: str) -> str:
    return f"market:{symbol}"


def orders_topic(user_id: str) -> str:
    return f"orders:{user_id}"


EXCHANGE_TOPIC = "exchange"


class FanoutHub:
    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.tick_sizes: dict[str, float] = {}
        self._subscriptions: set[Subscription[Any]] = set()
        self._subscribers: dict[str, set[Subscription[Any]]] = {}

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def tick_size(self, symbol: str) -> float:
        return self.tick_sizes.get(symbol, DEFAULT_TICK_SIZE)

    def unknown_symbols(self, batch: engine_pb2.EngineBatch) -> set[str]:
        """Symbols of the batch's market events whose tick size is not known yet.

        Replies outside any symbol's stream (sequence 0, e.g. a rejection for an unknown symbol)
        do not count: they name symbols that do not exist; nor do symbols the batch adds.
        """
        added = {e.symbol for e in batch.events if e.WhichOneof("event") == "symbol_added"}
        return {
            event.symbol
            for event in batch.events
            if event.sequence and event.symbol not in self.tick_sizes and event.symbol not in added
        }

    def subscribe_market(self, symbols: Iterable[str] = ()) -> Subscription[MarketMessage]:
        return self._subscribe([market_topic(symbol) for symbol in symbols], resyncs=True)

    def add_market_symbols(
        self, subscription: Subscription[MarketMessage], symbols: Iterable[str]
    ) -> None:
        """From the next batch on; nothing for a subscription already closed or unsubscribed."""
        self._add_topics(subscription, [market_topic(symbol) for symbol in symbols])

    def remove_market_symbols(
        self, subscription: Subscription[MarketMessage], symbols: Iterable[str]
    ) -> None:
        self._remove_topics(subscription, [market_topic(symbol) for symbol in symbols])

    def subscribe_orders(
        self, user_id: str
    ) -> Subscription[streams_pb2.StreamOrderUpdatesResponse]:
        return self._subscribe([orders_topic(user_id)])

    def subscribe_exchange(self) -> Subscription[streams_pb2.StreamExchangeEventsResponse]:
        return self._subscribe([EXCHANGE_TOPIC])

    def _subscribe(self, topics: list[str], resyncs: bool = False) -> Subscription[Any]:
        subscription: Subscription[Any] = Subscription(self.queue_size, resyncs)
        self._subscriptions.add(subscription)
        self._add_topics(subscription, topics)
        return subscription

    def _add_topics(self, subscription: Subscription[Any], topics: Iterable[str]) -> None:
        if subscription not in self._subscriptions:
            return
        for topic in topics:
            subscription.topics.add(topic)
            self._subscribers.setdefault(topic, set()).add(subscription)

    def _remove_topics(self, subscription: Subscription[Any], topics: Iterable[str]) -> None:
        for topic in topics:
            subscription.topics.discard(topic)
            subscribers = self._subscribers.get(topic)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[topic]

    def unsubscribe(self, subscription: Subscription[Any]) -> None:
        self._subscriptions.discard(subscription)
        self._remove_topics(subscription, list(subscription.topics))

    def close_all(self, reason: CloseReason) -> None:
        for subscription in list(self._subscriptions):
            self._close(subscription, reason)

    def feed_restored(self) -> None:
        """After a feed loss: market subscribers resynchronise (FEED_RESTORED, queued behind
        what they already hold); order updates and exchange events have no snapshot to catch
        up from, so those subscriptions are closed (FEED_LOST)."""
        for subscription in list(self._subscriptions):
            if not subscription.resyncs:
                self._close(subscription, CloseReason.FEED_LOST)
            elif not subscription.offer((FEED_RESTORED,)):
                self._close(subscription, CloseReason.FELL_BEHIND)

    def publish_batch(self, batch: engine_pb2.EngineBatch) -> None:
        for event in batch.events:
            if event.WhichOneof("event") == "symbol_added":
                self.tick_sizes[event.symbol] = float(
                    event.symbol_added.tick_size or DEFAULT_TICK_SIZE
                )
        if not self._subscribers:
            return
        public = batch_messages(batch, self.tick_size)
        routed: list[tuple[str, object]] = [
            (market_topic(market.symbol), market) for market in public.market
        ]
        routed.extend((orders_topic(order.user_id), order.response) for order in public.orders)
        routed.extend(
            (EXCHANGE_TOPIC, streams_pb2.StreamExchangeEventsResponse(event=event))
            for event in public.exchange_events
        )
        self._deliver(routed)

    def publish_exchange_event(self, event: streams_pb2.ExchangeEvent) -> None:
        """Exchange news from other services (news, leaderboard), beside the engine's own."""
        self._deliver([(EXCHANGE_TOPIC, streams_pb2.StreamExchangeEventsResponse(event=event))])

    def _deliver(self, routed: Iterable[tuple[str, object]]) -> None:
        """One queue entry per subscriber per batch, keeping the emitted order."""
        outbox: dict[Subscription[Any], list[object]] = {}
        for topic, message in routed:
            for subscription in self._subscribers.get(topic, ()):
                outbox.setdefault(subscription, []).append(message)
        for subscription, messages in outbox.items():
            if not subscription.offer(tuple(messages)):
                log.warning(
                    "subscriber dropped reason=fell_behind topics=%s queue_size=%d",
                    ",".join(sorted(subscription.topics)),
                    self.queue_size,
                )
                self._close(subscription, CloseReason.FELL_BEHIND)

    def _close(self, subscription: Subscription[Any], reason: CloseReason) -> None:
        self.unsubscribe(subscription)
        subscription.close(reason)
