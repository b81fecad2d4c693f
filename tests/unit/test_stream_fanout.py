"""The fan-out hub (stream_svc.fanout): routing, one entry per batch, slow subscribers dropped."""

from __future__ import annotations

import asyncio

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from stream_svc.fanout import CloseReason, FanoutHub, Subscription

NOW = 1_700_000_000_000_000_000


def event(symbol: str, sequence: int, **payload: object) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(symbol=symbol, sequence=sequence, timestamp_ns=NOW, **payload)


def level(symbol: str, sequence: int, price_ticks: int = 100) -> engine_pb2.EngineEvent:
    return event(
        symbol,
        sequence,
        book_level_changed=engine_pb2.BookLevelChanged(
            side=types_pb2.BUY, price_ticks=price_ticks, quantity=1, order_count=1
        ),
    )


def accepted(user_id: str, order_id: str, sequence: int = 1) -> engine_pb2.EngineEvent:
    state = engine_pb2.OrderState(
        order_id=order_id, user_id=user_id, symbol="ACME", status=types_pb2.NEW, quantity=1
    )
    return event("ACME", sequence, order_accepted=engine_pb2.OrderAccepted(order=state))


def batch(*events: engine_pb2.EngineEvent, **command: object) -> engine_pb2.EngineBatch:
    return engine_pb2.EngineBatch(command=engine_pb2.EngineCommand(**command), events=events)


def pending(subscription: Subscription) -> list[tuple]:
    """Everything queued, without waiting."""
    entries = []
    while True:
        try:
            entries.append(subscription._queue.get_nowait())
        except asyncio.QueueEmpty:
            return entries


def hub(queue_size: int = 8) -> FanoutHub:
    fanout = FanoutHub(queue_size)
    fanout.tick_sizes.update(ACME=0.01, GLOBX=0.05)
    return fanout


def test_market_subscriber_gets_its_symbols_only_one_entry_per_batch() -> None:
    fanout = hub()
    acme = fanout.subscribe_market(["ACME"])

    fanout.publish_batch(batch(level("ACME", 1), level("GLOBX", 1), level("ACME", 2, 101)))

    (entry,) = pending(acme)
    assert [(message.symbol, message.sequence) for message in entry] == [("ACME", 1), ("ACME", 2)]
    assert entry[1].response.book.bids[0].price == 1.01


def test_order_updates_go_to_their_owner_only() -> None:
    fanout = hub()
    alice, bob = fanout.subscribe_orders("alice"), fanout.subscribe_orders("bob")

    fanout.publish_batch(batch(accepted("alice", "a-1", 1), accepted("bob", "b-1", 2)))

    assert [[m.order.order_id for m in entry] for entry in pending(alice)] == [["a-1"]]
    assert [[m.order.order_id for m in entry] for entry in pending(bob)] == [["b-1"]]


def test_exchange_events_reach_every_exchange_subscriber() -> None:
    fanout = hub()
    first, second = fanout.subscribe_exchange(), fanout.subscribe_exchange()
    halted = event(
        "ACME", 3, market_state_changed=engine_pb2.MarketStateChanged(status=types_pb2.HALTED)
    )
    announced = engine_pb2.EngineEvent(
        symbol="ACME", exchange_sequence=7, trading_halted=engine_pb2.TradingHalted(symbol="ACME")
    )

    fanout.publish_batch(batch(halted, announced))
    fanout.publish_exchange_event(streams_pb2.ExchangeEvent(kind=streams_pb2.NEWS, message="x"))

    for subscription in (first, second):
        kinds = [entry[0].event.kind for entry in pending(subscription)]
        assert kinds == [streams_pb2.TRADING_HALTED, streams_pb2.NEWS]


def test_a_full_queue_drops_only_that_subscriber() -> None:
    fanout = hub(queue_size=2)
    slow, fast = fanout.subscribe_market(["ACME"]), fanout.subscribe_market(["ACME"])

    for sequence in (1, 2, 3):
        fanout.publish_batch(batch(level("ACME", sequence)))
        pending(fast)

    assert slow.close_reason is CloseReason.FELL_BEHIND and slow.closed.is_set()
    assert fast.close_reason is None
    assert fanout.subscriber_count == 1
    fanout.publish_batch(batch(level("ACME", 4)))
    assert [entry[0].sequence for entry in pending(fast)] == [4]


def test_unsubscribed_gets_nothing_more() -> None:
    fanout = hub()
    subscription = fanout.subscribe_market(["ACME", "GLOBX"])
    fanout.unsubscribe(subscription)

    fanout.publish_batch(batch(level("ACME", 1), level("GLOBX", 1)))

    assert pending(subscription) == [] and fanout.subscriber_count == 0


def test_close_all_tells_every_subscriber_why() -> None:
    fanout = hub()
    subscriptions = [
        fanout.subscribe_market(["ACME"]),
        fanout.subscribe_orders("alice"),
        fanout.subscribe_exchange(),
    ]

    fanout.close_all(CloseReason.FEED_LOST)

    assert all(s.close_reason is CloseReason.FEED_LOST for s in subscriptions)
    assert fanout.subscriber_count == 0


def test_symbol_added_teaches_its_tick_size() -> None:
    fanout = hub()
    added = event("NEWCO", 1, symbol_added=engine_pb2.SymbolAdded(tick_size="0.25", lot_size=1))
    fanout.publish_batch(batch(added))
    subscription = fanout.subscribe_market(["NEWCO"])

    fanout.publish_batch(batch(level("NEWCO", 2, price_ticks=3)))

    assert pending(subscription)[0][0].response.book.bids[0].price == 0.75


def test_unknown_symbols_count_sequenced_events_only() -> None:
    fanout = hub()
    rejected = event(
        "NOPE",
        0,
        order_rejected=engine_pb2.OrderRejected(
            order=engine_pb2.OrderState(order_id="o", symbol="NOPE")
        ),
    )
    assert fanout.unknown_symbols(batch(rejected, level("ACME", 1))) == set()
    assert fanout.unknown_symbols(batch(level("LATE", 1))) == {"LATE"}


def test_market_symbols_come_and_go_on_a_live_subscription() -> None:
    fanout = hub()
    subscription = fanout.subscribe_market()
    fanout.add_market_symbols(subscription, ["ACME", "GLOBX"])
    fanout.remove_market_symbols(subscription, ["ACME"])

    fanout.publish_batch(batch(level("ACME", 1), level("GLOBX", 1)))

    assert [[m.symbol for m in entry] for entry in pending(subscription)] == [["GLOBX"]]
    assert fanout.subscriber_count == 1


def test_a_closed_subscription_takes_no_new_symbols() -> None:
    fanout = hub()
    subscription = fanout.subscribe_market(["ACME"])
    fanout.close_all(CloseReason.SHUTTING_DOWN)
    fanout.add_market_symbols(subscription, ["GLOBX"])

    fanout.publish_batch(batch(level("GLOBX", 1)))

    assert pending(subscription) == [] and fanout.subscriber_count == 0
