"""store_svc.records: EngineBatch and EngineSnapshot messages to the store's rows."""

from __future__ import annotations

from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from store_svc.records import Rows, order_state

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def state(order_id: str, status: int, filled: int = 0, updated_ns: int = T0, **fields):
    values = dict(
        order_id=order_id,
        user_id="alice",
        symbol="ACME",
        side=types_pb2.SELL,
        type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD,
        price_ticks=10125,
        quantity=10,
        filled_quantity=filled,
        filled_notional_ticks=filled * 10125,
        status=status,
        created_ns=T0,
        updated_ns=updated_ns,
    )
    values.update(fields)
    return engine_pb2.OrderState(**values)


def accepted(order: engine_pb2.OrderState, sequence: int) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(
        symbol=order.symbol,
        sequence=sequence,
        timestamp_ns=order.updated_ns,
        order_accepted=engine_pb2.OrderAccepted(order=order),
    )


def cancelled(order: engine_pb2.OrderState, sequence: int) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(
        symbol=order.symbol,
        sequence=sequence,
        timestamp_ns=order.updated_ns,
        order_cancelled=engine_pb2.OrderCancelled(order=order),
    )


def crossing_batch() -> engine_pb2.EngineBatch:
    """bob's BUY 4 @ 101.30 meets alice's resting SELL 10 @ 101.25."""
    now = T0 + 1_000
    buy_new = state(
        "o2",
        types_pb2.NEW,
        user_id="bob",
        side=types_pb2.BUY,
        price_ticks=10130,
        quantity=4,
        created_ns=now,
        updated_ns=now,
    )
    buy_filled = state(
        "o2",
        types_pb2.FILLED,
        filled=4,
        user_id="bob",
        side=types_pb2.BUY,
        price_ticks=10130,
        quantity=4,
        created_ns=now,
        updated_ns=now,
    )
    sell_partial = state("o1", types_pb2.PARTIALLY_FILLED, filled=4, updated_ns=now)
    return engine_pb2.EngineBatch(
        command=engine_pb2.EngineCommand(command_id="o2", timestamp_ns=now),
        events=[
            accepted(buy_new, 5),
            engine_pb2.EngineEvent(
                symbol="ACME",
                sequence=6,
                timestamp_ns=now,
                trade_executed=engine_pb2.TradeExecuted(
                    trade_id="t1",
                    price_ticks=10125,
                    quantity=4,
                    aggressor_side=types_pb2.BUY,
                    buy_order_id="o2",
                    sell_order_id="o1",
                    buyer_id="bob",
                    seller_id="alice",
                ),
            ),
            engine_pb2.EngineEvent(
                symbol="ACME",
                sequence=6,
                timestamp_ns=now,
                order_filled=engine_pb2.OrderFilled(
                    order=sell_partial, trade_id="t1", price_ticks=10125, quantity=4
                ),
            ),
            engine_pb2.EngineEvent(
                symbol="ACME",
                sequence=6,
                timestamp_ns=now,
                order_filled=engine_pb2.OrderFilled(
                    order=buy_filled, trade_id="t1", price_ticks=10125, quantity=4
                ),
            ),
            engine_pb2.EngineEvent(
                symbol="ACME",
                sequence=7,
                timestamp_ns=now,
                book_level_changed=engine_pb2.BookLevelChanged(
                    side=types_pb2.SELL, price_ticks=10125, quantity=6, order_count=1
                ),
            ),
        ],
    )


def test_symbol_added_becomes_a_symbol_row():
    rows = Rows()
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=engine_pb2.EngineCommand(
                add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", tick_size="0.05", lot_size=10)
            ),
            events=[
                engine_pb2.EngineEvent(
                    symbol="ACME",
                    sequence=1,
                    timestamp_ns=T0,
                    symbol_added=engine_pb2.SymbolAdded(tick_size="0.05", lot_size=10),
                )
            ],
        ),
        log_offset=0,
    )
    assert rows.symbols == {"ACME": {"symbol": "ACME", "tick_size": "0.05", "lot_size": 10}}
    assert len(rows) == 1


def create_account(user_id: str, key_sha: str, admin: bool) -> engine_pb2.EngineCommand:
    return engine_pb2.EngineCommand(
        command_id=f"user-{user_id}",
        timestamp_ns=T0,
        create_account=engine_pb2.CreateAccountCommand(
            user_id=user_id, cash_units=10**9, api_key_sha256=key_sha, admin=admin
        ),
    )


def account_created(user_id: str, key_sha: str, admin: bool) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(
        timestamp_ns=T0,
        exchange_sequence=2,
        account_created=engine_pb2.AccountCreated(
            user_id=user_id,
            admin=admin,
            api_key_sha256=key_sha,
            cash_units=10**9,
            starting_value_units=10**9,
        ),
    )


def refused(reason: int, message: str, user_id: str = "") -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(
        timestamp_ns=T0,
        command_refused=engine_pb2.CommandRefused(reason=reason, message=message, user_id=user_id),
    )


def test_account_created_event_becomes_a_user_row():
    rows = Rows()
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=create_account("bob", "ab" * 32, admin=True),
            events=[account_created("bob", "ab" * 32, admin=True)],
        ),
        log_offset=1,
    )
    assert rows.users == {"bob": {"user_id": "bob", "admin": True, "api_key_sha256": "ab" * 32}}
    assert rows.accounts == [
        {
            "user_id": "bob",
            "role": "ACCOUNT_ROLE_PARTICIPANT_UNSPECIFIED",
            "admin": True,
            "created_ns": T0,
        }
    ]
    assert rows.participants == set()  # an admin has no report
    assert len(rows) == 2


def test_refused_create_account_gives_no_user_row():
    """Two admins race for one user id: the second CreateAccount is refused, and its key and
    admin flag must not reach the users table."""
    rows = Rows()
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=create_account("carol", "c1" * 32, admin=False),
            events=[account_created("carol", "c1" * 32, admin=False)],
        ),
        log_offset=1,
    )
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=create_account("carol", "c2" * 32, admin=True),
            events=[
                refused(engine_pb2.REFUSAL_REASON_ACCOUNT_EXISTS, "userId carol exists", "carol")
            ],
        ),
        log_offset=2,
    )
    assert rows.users == {
        "carol": {"user_id": "carol", "admin": False, "api_key_sha256": "c1" * 32}
    }

    only_refused = Rows()
    only_refused.add_batch(
        engine_pb2.EngineBatch(
            command=create_account("dave", "d0" * 32, admin=True),
            events=[
                refused(engine_pb2.REFUSAL_REASON_INVALID_ARGUMENT, "cash must not be negative")
            ],
        ),
        log_offset=3,
    )
    assert len(only_refused) == 0


def test_commands_without_their_events_give_no_rows():
    """A listing or an order the engine refused logs its command but none of the events that
    rows come from."""
    rows = Rows()
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=engine_pb2.EngineCommand(
                add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", tick_size="0.01", lot_size=1)
            ),
            events=[refused(engine_pb2.REFUSAL_REASON_SYMBOL_EXISTS, "symbol ACME is listed")],
        ),
        log_offset=4,
    )
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=engine_pb2.EngineCommand(
                command_id="o9",
                place_order=engine_pb2.PlaceOrderCommand(
                    order_id="o9", user_id="alice", symbol="ACME", quantity=1, price_ticks=1
                ),
            ),
            events=[
                refused(
                    engine_pb2.REFUSAL_REASON_DUPLICATE_CLIENT_ORDER_ID,
                    "clientOrderId c-1",
                    "alice",
                )
            ],
        ),
        log_offset=5,
    )
    assert len(rows) == 0


def test_accepted_order_becomes_an_order_row_with_enum_names_and_its_log_position():
    rows = Rows()
    order = state("o1", types_pb2.NEW, client_order_id="c-1")
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(order, 2)]), log_offset=3)
    assert rows.orders == {
        "o1": {
            "order_id": "o1",
            "user_id": "alice",
            "symbol": "ACME",
            "side": "SELL",
            "type": "LIMIT",
            "time_in_force": "GFD",
            "price_ticks": 10125,
            "quantity": 10,
            "filled_quantity": 0,
            "filled_notional_ticks": 0,
            "status": "NEW",
            "reason": "ORDER_REASON_UNSPECIFIED",
            "client_order_id": "c-1",
            "created_ns": T0,
            "updated_ns": T0,
            "log_offset": 3,
            "event_index": 0,
        }
    }


def test_order_row_maps_back_to_the_same_order_state():
    rows = Rows()
    order = state("o1", types_pb2.CANCELLED, filled=4, reason=types_pb2.CANCELLED_BY_OWNER)
    rows.add_batch(engine_pb2.EngineBatch(events=[cancelled(order, 11)]), log_offset=5)

    class Record:
        def __init__(self, row):
            self.__dict__.update(row)

    assert order_state(Record(rows.orders["o1"])) == order


def test_crossing_order_gives_one_trade_two_fills_and_the_last_state_of_each_order():
    rows = Rows()
    rows.add_batch(crossing_batch(), log_offset=4)
    now = T0 + 1_000
    assert rows.trades == [
        {
            "trade_id": "t1",
            "symbol": "ACME",
            "price_ticks": 10125,
            "quantity": 4,
            "aggressor_side": "BUY",
            "buy_order_id": "o2",
            "sell_order_id": "o1",
            "buyer_id": "bob",
            "seller_id": "alice",
            "timestamp_ns": now,
            "sequence": 6,
        }
    ]
    assert rows.fills == [
        {
            "order_id": "o1",
            "trade_id": "t1",
            "price_ticks": 10125,
            "quantity": 4,
            "timestamp_ns": now,
            "sequence": 6,
            "fee_units": 0,
        },
        {
            "order_id": "o2",
            "trade_id": "t1",
            "price_ticks": 10125,
            "quantity": 4,
            "timestamp_ns": now,
            "sequence": 6,
            "fee_units": 0,
        },
    ]
    assert {order_id: row["status"] for order_id, row in rows.orders.items()} == {
        "o1": "PARTIALLY_FILLED",
        "o2": "FILLED",
    }
    assert rows.orders["o2"]["event_index"] == 3
    assert rows.symbols == {} and rows.users == {} and rows.snapshots == []


def test_newest_order_state_wins_when_an_older_batch_is_replayed_in_the_same_poll():
    rows = Rows()
    resting = state("o1", types_pb2.NEW)
    gone = state("o1", types_pb2.CANCELLED, updated_ns=T0 + 5, reason=types_pb2.CANCELLED_BY_OWNER)
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(resting, 2)]), log_offset=3)
    rows.add_batch(engine_pb2.EngineBatch(events=[cancelled(gone, 11)]), log_offset=5)
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(resting, 2)]), log_offset=3)
    assert rows.orders["o1"]["status"] == "CANCELLED"
    assert rows.orders["o1"]["log_offset"] == 5


def test_same_timestamp_states_are_ordered_by_log_offset_then_sequence():
    rows = Rows()
    partial = state("o1", types_pb2.PARTIALLY_FILLED, filled=4)
    filled = state("o1", types_pb2.FILLED, filled=10)
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(filled, 9)]), log_offset=7)
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(partial, 8)]), log_offset=7)
    assert rows.orders["o1"]["status"] == "FILLED"
    rows.add_batch(engine_pb2.EngineBatch(events=[accepted(partial, 1)]), log_offset=8)
    assert rows.orders["o1"]["status"] == "PARTIALLY_FILLED"


def test_snapshot_is_kept_whole_keyed_by_the_events_offset_it_follows():
    snapshot = engine_pb2.EngineSnapshot(
        log_offset=41,
        last_stream_id="1-0",
        timestamp_ns=T0,
        market_open=True,
        symbols=[engine_pb2.SymbolSnapshot(symbol="ACME", tick_size="0.01", lot_size=1)],
    )
    payload = snapshot.SerializeToString()
    rows = Rows()
    rows.add_snapshot(snapshot, payload)
    assert rows.snapshots == [{"log_offset": 41, "timestamp_ns": T0, "payload": payload}]


def test_events_without_rows_are_ignored():
    rows = Rows()
    rows.add_batch(
        engine_pb2.EngineBatch(
            command=engine_pb2.EngineCommand(open_market=engine_pb2.OpenMarketCommand()),
            events=[
                engine_pb2.EngineEvent(
                    symbol="ACME",
                    sequence=3,
                    timestamp_ns=T0,
                    market_state_changed=engine_pb2.MarketStateChanged(status=types_pb2.OPEN),
                ),
                engine_pb2.EngineEvent(
                    symbol="",
                    sequence=0,
                    timestamp_ns=T0,
                    cancel_rejected=engine_pb2.CancelRejected(
                        order_id="o9", user_id="bob", reason=types_pb2.UNKNOWN_ORDER
                    ),
                ),
            ],
        ),
        log_offset=9,
    )
    assert len(rows) == 0
