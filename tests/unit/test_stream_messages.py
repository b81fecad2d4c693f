"""Engine events to the public stream messages (stream_svc.messages)."""

from __future__ import annotations

import pytest

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex.participant import timestamp
from stream_svc.messages import batch_messages, book_snapshot, exchange_events

NOW = 1_700_000_000_123_456_789
TICKS = {"ACME": 0.01, "GLOBX": 0.05}


def event(symbol: str, sequence: int, **payload: object) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(symbol=symbol, sequence=sequence, timestamp_ns=NOW, **payload)


def order_state(user_id: str = "alice", **fields: object) -> engine_pb2.OrderState:
    defaults: dict[str, object] = dict(
        order_id="o-1",
        user_id=user_id,
        symbol="ACME",
        side=types_pb2.BUY,
        type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD,
        price_ticks=10125,
        quantity=10,
        status=types_pb2.NEW,
        created_ns=NOW,
        updated_ns=NOW,
    )
    return engine_pb2.OrderState(**{**defaults, **fields})


def messages(*events: engine_pb2.EngineEvent, command: engine_pb2.EngineCommand | None = None):
    batch = engine_pb2.EngineBatch(command=command, events=events)
    return batch_messages(batch, lambda symbol: TICKS.get(symbol, 0.01))


def test_book_level_change_is_a_one_level_delta_on_its_side() -> None:
    bid = event(
        "ACME",
        7,
        book_level_changed=engine_pb2.BookLevelChanged(
            side=types_pb2.BUY, price_ticks=10125, quantity=300, order_count=2
        ),
    )
    ask_gone = event(
        "GLOBX",
        3,
        book_level_changed=engine_pb2.BookLevelChanged(
            side=types_pb2.SELL, price_ticks=2021, quantity=0, order_count=0
        ),
    )

    bid_message, ask_message = messages(bid, ask_gone).market

    assert (bid_message.symbol, bid_message.sequence) == ("ACME", 7)
    update = bid_message.response.book
    assert not update.snapshot and update.sequence == 7 and not update.asks
    assert list(update.bids) == [types_pb2.PriceLevel(price=101.25, quantity=300, orders=2)]
    assert update.timestamp.ToNanoseconds() == NOW
    gone = ask_message.response.book
    assert list(gone.asks) == [types_pb2.PriceLevel(price=101.05, quantity=0, orders=0)]


def test_trade_has_its_price_in_currency_and_the_events_sequence() -> None:
    trade = event(
        "ACME",
        9,
        trade_executed=engine_pb2.TradeExecuted(
            trade_id="t-1",
            price_ticks=10050,
            quantity=5,
            aggressor_side=types_pb2.SELL,
            buy_order_id="b",
            sell_order_id="s",
            buyer_id="alice",
            seller_id="bob",
        ),
    )

    (message,) = messages(trade).market

    assert message.response.trade == types_pb2.Trade(
        trade_id="t-1",
        price=100.5,
        quantity=5,
        aggressor_side=types_pb2.SELL,
        timestamp=timestamp(NOW),
        sequence=9,
        symbol="ACME",
    )


def test_quote_carries_every_field() -> None:
    quote = event(
        "GLOBX",
        4,
        quote_changed=engine_pb2.QuoteChanged(
            bid_ticks=1999,
            bid_size=10,
            ask_ticks=2001,
            ask_size=20,
            last_ticks=2000,
            last_quantity=3,
            volume=150,
            open_ticks=1990,
            high_ticks=2010,
            low_ticks=1980,
        ),
    )

    (message,) = messages(quote).market

    assert message.response.quote == types_pb2.Quote(
        symbol="GLOBX",
        ltp=100.0,
        last_quantity=3,
        bid=99.95,
        bid_size=10,
        ask=100.05,
        ask_size=20,
        volume=150,
        open=99.5,
        high=100.5,
        low=99.0,
        timestamp=timestamp(NOW),
        sequence=4,
    )


def test_fill_reaches_the_owner_before_the_orders_new_state() -> None:
    state = order_state(
        status=types_pb2.PARTIALLY_FILLED, filled_quantity=4, filled_notional_ticks=4 * 10100
    )
    filled = event(
        "ACME",
        11,
        order_filled=engine_pb2.OrderFilled(
            order=state, trade_id="t-2", price_ticks=10100, quantity=4
        ),
    )

    fill, order = messages(filled).orders

    assert fill.user_id == order.user_id == "alice"
    assert fill.response.fill == streams_pb2.FillUpdate(
        order_id="o-1",
        trade_id="t-2",
        symbol="ACME",
        side=types_pb2.BUY,
        price=101.0,
        quantity=4,
        timestamp=timestamp(NOW),
    )
    public = order.response.order
    assert (public.status, public.filled_quantity, public.remaining_quantity) == (
        types_pb2.PARTIALLY_FILLED,
        4,
        6,
    )
    assert public.price == 101.25 and public.avg_fill_price == 101.0
    assert not public.fills


@pytest.mark.parametrize(
    "kind", ["order_accepted", "order_rejected", "order_cancelled", "order_expired"]
)
def test_every_order_event_is_one_order_message(kind: str) -> None:
    wrapper = getattr(engine_pb2, "".join(part.title() for part in kind.split("_")))
    (message,) = messages(event("ACME", 2, **{kind: wrapper(order=order_state())})).orders
    assert message.response.order.order_id == "o-1"


def test_orders_without_a_user_have_nobody_to_tell() -> None:
    accepted = event("ACME", 2, order_accepted=engine_pb2.OrderAccepted(order=order_state("")))
    assert messages(accepted).orders == []


def test_replies_and_state_changes_are_not_market_data() -> None:
    batch = messages(
        event("", 0, cancel_rejected=engine_pb2.CancelRejected(order_id="o-9", user_id="bob")),
        event(
            "ACME", 5, market_state_changed=engine_pb2.MarketStateChanged(status=types_pb2.HALTED)
        ),
    )
    assert batch.market == [] and batch.orders == []


def exchange_wide(sequence: int, symbol: str = "", **payload: object) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(
        symbol=symbol, exchange_sequence=sequence, timestamp_ns=NOW, **payload
    )


@pytest.mark.parametrize(
    ("engine_event", "kind", "symbol"),
    [
        (
            exchange_wide(4, trading_day_opened=engine_pb2.TradingDayOpened()),
            streams_pb2.MARKET_OPENED,
            "",
        ),
        (
            exchange_wide(4, trading_day_closed=engine_pb2.TradingDayClosed()),
            streams_pb2.MARKET_CLOSED_FOR_DAY,
            "",
        ),
        (
            exchange_wide(4, "ACME", trading_halted=engine_pb2.TradingHalted(symbol="ACME")),
            streams_pb2.TRADING_HALTED,
            "ACME",
        ),
        (
            exchange_wide(4, trading_halted=engine_pb2.TradingHalted()),
            streams_pb2.TRADING_HALTED,
            "",
        ),
        (
            exchange_wide(4, trading_resumed=engine_pb2.TradingResumed()),
            streams_pb2.TRADING_RESUMED,
            "",
        ),
        (
            exchange_wide(
                4,
                account_created=engine_pb2.AccountCreated(
                    user_id="carol", api_key_sha256="secret-hash"
                ),
            ),
            streams_pb2.ACCOUNT_CREATED,
            "",
        ),
        (
            exchange_wide(
                4,
                settings_changed=engine_pb2.SettingsChanged(
                    settings=engine_pb2.ExchangeSettings(short_limit=50)
                ),
            ),
            streams_pb2.SETTINGS_CHANGED,
            "",
        ),
    ],
)
def test_exchange_wide_events_are_announced_with_their_sequence(engine_event, kind, symbol) -> None:
    batch = engine_pb2.EngineBatch(events=[state_changed("ACME", types_pb2.HALTED), engine_event])

    (announced,) = exchange_events(batch)

    assert (announced.kind, announced.symbol, announced.sequence) == (kind, symbol, 4)
    assert announced.message and announced.timestamp.ToNanoseconds() == NOW
    assert "secret-hash" not in announced.message


def test_symbol_added_is_announced_with_its_tick_size() -> None:
    batch = engine_pb2.EngineBatch(
        events=[
            engine_pb2.EngineEvent(
                symbol="NEWCO",
                sequence=1,
                exchange_sequence=9,
                timestamp_ns=NOW,
                symbol_added=engine_pb2.SymbolAdded(tick_size="0.05", lot_size=1),
            )
        ],
    )
    (announced,) = exchange_events(batch)
    assert (announced.kind, announced.symbol) == (streams_pb2.SYMBOL_ADDED, "NEWCO")
    assert announced.sequence == 9
    assert "0.05" in announced.message


def test_a_command_that_changed_nothing_is_not_announced() -> None:
    opened_twice = engine_pb2.EngineBatch(
        command=engine_pb2.EngineCommand(open_market=engine_pb2.OpenMarketCommand())
    )
    order = engine_pb2.EngineBatch(
        events=[event("ACME", 3, order_accepted=engine_pb2.OrderAccepted(order=order_state()))],
    )
    halted_symbol = engine_pb2.EngineBatch(events=[state_changed("ACME", types_pb2.HALTED)])
    assert exchange_events(opened_twice) == []
    assert exchange_events(order) == []
    assert exchange_events(halted_symbol) == []


def state_changed(symbol: str, status: int) -> engine_pb2.EngineEvent:
    return event(symbol, 2, market_state_changed=engine_pb2.MarketStateChanged(status=status))


def test_snapshot_is_the_whole_book_at_its_sequence() -> None:
    book = types_pb2.OrderBook(
        symbol="ACME",
        sequence=42,
        bids=[types_pb2.PriceLevel(price=101.0, quantity=5, orders=1)],
        asks=[types_pb2.PriceLevel(price=101.5, quantity=7, orders=2)],
    )
    update = book_snapshot(book).book
    assert update.snapshot and update.sequence == 42 and update.symbol == "ACME"
    assert list(update.bids) == list(book.bids) and list(update.asks) == list(book.asks)
