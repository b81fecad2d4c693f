"""Engine snapshots (codec.snapshot_engine / restore_engine, CommandHandler.snapshot / restore):
a restored engine is the engine it was taken from, down to what decides its next events; a
format 0 snapshot (before integer P&L) is converted."""

from __future__ import annotations

from engine_svc.codec import SNAPSHOT_FORMAT, restore_engine, snapshot_engine
from engine_svc.engine import MatchingEngine
from engine_svc.events import OrderFilled
from engine_svc.orders import OrderStatus, OrderType, Reason, Side, TimeInForce
from engine_svc.rules import ExchangeSettings
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2
from tests.unit.test_engine_stateful import state_of

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, GTC = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.GTC
CASH = 10_000_000
KEY = "ab" * 32


class Driver:
    """Sends EngineCommands to a handler as a gateway session would, numbering them."""

    def __init__(self, handler: CommandHandler) -> None:
        self.handler = handler
        self.now = 0
        self.sequences: dict[str, int] = {}

    def send(self, session: str = "gw-1", **oneof) -> list:
        self.now += 10
        message = engine_pb2.EngineCommand(timestamp_ns=self.now, **oneof)
        if session:
            self.sequences[session] = self.sequences.get(session, 0) + 1
            message.session_id = session
            message.session_sequence = self.sequences[session]
        return self.handler.apply(message)

    def place(
        self, order_id, user, symbol, side, price, quantity, tif=GFD, type=LIMIT, client="", **kw
    ):
        place = engine_pb2.PlaceOrderCommand(
            order_id=order_id,
            user_id=user,
            symbol=symbol,
            side=side,
            type=type,
            time_in_force=tif,
            price_ticks=price,
            quantity=quantity,
            client_order_id=client,
        )
        return self.send(place_order=place, **kw)


def busy_handler() -> tuple[CommandHandler, Driver]:
    """An exchange in the middle of a day: listings with reference prices, accounts with grants at
    both kinds of cost basis, trades with partial closes and a short, resting GFD and GTC orders
    partly filled, clientOrderIds, a halt, a cash adjustment, settings, two sessions with a gap."""
    settings = ExchangeSettings(rules_version=1, short_limit=5, max_open_orders=6)
    handler = CommandHandler(MatchingEngine(settings=settings))
    drive = Driver(handler)
    drive.send("", add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", reference_price_ticks=100))
    drive.send(
        "",
        add_symbol=engine_pb2.AddSymbolCommand(
            symbol="BETA", tick_size="0.05", lot_size=5, reference_price_ticks=20
        ),
    )
    drive.send(
        "",
        create_account=engine_pb2.CreateAccountCommand(
            user_id="alice",
            cash_units=CASH,
            api_key_sha256=KEY,
            grants=[
                engine_pb2.PositionGrant(symbol="ACME", quantity=50),
                engine_pb2.PositionGrant(symbol="BETA", quantity=20, price_ticks=21),
            ],
        ),
    )
    drive.send(
        "",
        create_account=engine_pb2.CreateAccountCommand(
            user_id="bob",
            cash_units=CASH,
            grants=[engine_pb2.PositionGrant(symbol="ACME", quantity=3, price_ticks=97)],
        ),
    )
    drive.send("", create_account=engine_pb2.CreateAccountCommand(user_id="ops", admin=True))
    drive.place("a1", "alice", "ACME", SELL, 101, 7, client="sell-1")
    drive.place("b1", "bob", "ACME", BUY, 102, 2, tif=IOC, session="gw-2")  # alice realizes
    drive.place("b2", "bob", "ACME", SELL, 99, 8, tif=GTC, client="short", session="gw-2")
    drive.place("m1", "", "ACME", BUY, 99, 7)  # bob sells his 5 and goes 2 short
    drive.place("a2", "alice", "ACME", BUY, 95, 10, tif=GTC, client="bid-1")
    drive.place("m2", "", "BETA", SELL, 22, 15, tif=GTC)
    drive.place("a3", "alice", "BETA", BUY, 22, 5, tif=IOC)
    drive.send(adjust_cash=engine_pb2.AdjustCashCommand(user_id="bob", amount_units=-12_345))
    drive.send(halt_trading=engine_pb2.HaltTradingCommand(symbol="BETA"))
    # gw-2 sends its third command after a fifth it numbered but that was lost: a gap.
    drive.sequences["gw-2"] += 2
    drive.place("b3", "bob", "ACME", BUY, 90, 1, session="gw-2")
    return handler, drive


def round_trip(snapshot: engine_pb2.EngineSnapshot) -> engine_pb2.EngineSnapshot:
    return engine_pb2.EngineSnapshot.FromString(snapshot.SerializeToString())


def test_the_busy_exchange_has_what_a_snapshot_must_keep():
    handler, _ = busy_handler()
    engine = handler.engine

    alice, bob = engine.accounts["alice"], engine.accounts["bob"]
    assert alice.positions["ACME"].realized_pnl != 0 and bob.positions["ACME"].quantity < 0
    assert engine.client_orders and engine.symbols["BETA"].halted
    assert {order.status for order in engine.open_orders.values()} == {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
    }
    assert handler.ledger.sessions["gw-2"].applied_after


def test_codec_round_trip_restores_the_same_engine():
    handler, _ = busy_handler()

    restored = restore_engine(round_trip(snapshot_engine(handler.engine)))

    assert state_of(CommandHandler(restored)) == state_of(CommandHandler(handler.engine))


def test_codec_snapshot_keeps_costs_realized_pnl_settings_and_exchange_sequence():
    handler, _ = busy_handler()
    engine = handler.engine

    snapshot = round_trip(snapshot_engine(engine))

    assert snapshot.format_version == SNAPSHOT_FORMAT == 2
    assert snapshot.exchange_sequence == engine.exchange_sequence == 6
    assert (snapshot.settings.short_limit, snapshot.settings.max_open_orders) == (5, 6)
    assert snapshot.settings.rules_version == 1
    positions = {
        (account.user_id, p.symbol): (p.quantity, p.cost_units, p.realized_pnl_units)
        for account in snapshot.accounts
        for p in account.positions
    }
    for user, account in engine.accounts.items():
        for symbol, position in account.positions.items():
            assert positions[(user, symbol)] == (
                position.quantity,
                position.cost,
                position.realized_pnl,
            )
    restored = restore_engine(snapshot)
    assert restored.settings == engine.settings
    assert restored.exchange_sequence == engine.exchange_sequence
    assert restored.accounts["alice"].starting_value == engine.accounts["alice"].starting_value
    assert restored.accounts["alice"].api_key_sha256 == KEY
    assert restored.accounts["ops"].admin


def test_codec_snapshot_keeps_the_days_client_order_ids():
    handler, drive = busy_handler()

    restored = CommandHandler(restore_engine(round_trip(snapshot_engine(handler.engine))))

    assert restored.engine.client_orders == handler.engine.client_orders
    again = Driver(restored)
    again.now = drive.now
    (refused,) = again.place("a9", "alice", "ACME", BUY, 90, 1, client="bid-1")
    assert (refused.reason, refused.order_id) == (1, "a2")


def test_handler_round_trip_keeps_the_sessions():
    handler, drive = busy_handler()

    restored = CommandHandler.restore(round_trip(handler.snapshot()))

    assert state_of(restored) == state_of(handler)
    gw2 = restored.ledger.sessions["gw-2"]
    assert (gw2.applied_through, sorted(gw2.applied_after)) == (2, [5])
    assert gw2.last_applied_ns == handler.ledger.sessions["gw-2"].last_applied_ns
    resend = engine_pb2.EngineCommand(session_id="gw-2", session_sequence=5)
    assert restored.is_applied(resend)
    resend.session_sequence = 3
    assert not restored.is_applied(resend)


def test_a_snapshot_of_the_restored_handler_is_the_same_message():
    handler, _ = busy_handler()
    snapshot = handler.snapshot()

    assert CommandHandler.restore(round_trip(snapshot)).snapshot() == snapshot


def test_the_restored_handler_answers_the_next_commands_like_the_original():
    handler, drive = busy_handler()
    restored = CommandHandler.restore(round_trip(handler.snapshot()))
    copy = Driver(restored)
    copy.now, copy.sequences = drive.now, dict(drive.sequences)

    def script(d: Driver) -> list:
        events = []
        events += d.place("c1", "bob", "ACME", BUY, 101, 3)  # takes alice's partly filled ask
        events += d.place("c2", "", "ACME", SELL, 94, 12, tif=IOC)  # through alice's GTC bid
        events += d.place("c3", "alice", "ACME", BUY, 0, 4, tif=IOC, type=MARKET)
        events += d.send(cancel_order=engine_pb2.CancelOrderCommand(order_id="b2", user_id="bob"))
        events += d.send(resume_trading=engine_pb2.ResumeTradingCommand(symbol="BETA"))
        events += d.place("c4", "alice", "BETA", BUY, 22, 10)
        events += d.send(close_market=engine_pb2.CloseMarketCommand())
        events += d.send(open_market=engine_pb2.OpenMarketCommand())
        events += d.place("c5", "alice", "ACME", SELL, 100, 2, client="sell-1")
        return events

    original = script(drive)

    assert script(copy) == original
    assert any(isinstance(e, OrderFilled) for e in original)
    assert state_of(restored) == state_of(handler)


def test_a_closed_market_with_gtc_orders_survives_a_snapshot():
    handler, drive = busy_handler()
    drive.send(close_market=engine_pb2.CloseMarketCommand())

    restored = CommandHandler.restore(round_trip(handler.snapshot()))

    assert not restored.engine.market_open
    assert restored.engine.client_orders == {}  # forgotten at the close
    assert sorted(restored.engine.open_orders) == sorted(handler.engine.open_orders) != []
    assert state_of(restored) == state_of(handler)


# ---- format 0 -------------------------------------------------------------------------------


def format_0_snapshot() -> engine_pb2.EngineSnapshot:
    """A snapshot as the engine wrote it before integer P&L: float average price and realized
    P&L in currency, settings in their own fields, API keys in a list of users."""
    return engine_pb2.EngineSnapshot(
        format_version=0,
        log_offset=41,
        last_stream_id="1700000000000-0",
        market_open=True,
        short_limit=5,
        max_open_orders=3,
        symbols=[
            engine_pb2.SymbolSnapshot(
                symbol="ACME",
                tick_size="0.01",
                lot_size=1,
                sequence=17,
                trade_count=4,
                last_ticks=103,
                last_quantity=2,
                volume=9,
                open_ticks=100,
                high_ticks=104,
                low_ticks=99,
            )
        ],
        accounts=[
            engine_pb2.AccountSnapshot(
                user_id="alice",
                cash_units=CASH,
                reserved_cash_units=98 * 2 * 100,
                positions=[
                    # 3 bought for 3.01: a float average that is not exact
                    engine_pb2.PositionSnapshot(
                        symbol="ACME", quantity=3, reserved=1, avg_price=3.01 / 3, realized_pnl=-1.5
                    ),
                ],
            ),
            engine_pb2.AccountSnapshot(
                user_id="bob",
                cash_units=5_000_000,
                positions=[
                    engine_pb2.PositionSnapshot(
                        symbol="ACME", quantity=-4, avg_price=2.5, realized_pnl=0.3333
                    )
                ],
            ),
            engine_pb2.AccountSnapshot(user_id="carol", cash_units=1_000),
        ],
        users=[
            engine_pb2.UserRecord(user_id="alice", api_key_sha256=KEY),
            engine_pb2.UserRecord(user_id="bob", admin=True, api_key_sha256="cd" * 32),
        ],
        open_orders=[
            engine_pb2.RestingOrder(
                order=engine_pb2.OrderState(
                    order_id="rest-buy",
                    user_id="alice",
                    symbol="ACME",
                    side=BUY,
                    type=LIMIT,
                    time_in_force=GTC,
                    price_ticks=98,
                    quantity=3,
                    filled_quantity=1,
                    filled_notional_ticks=98,
                    status=OrderStatus.PARTIALLY_FILLED,
                    created_ns=5,
                    updated_ns=6,
                ),
                reserved_cash_units=98 * 2 * 100,
            ),
            engine_pb2.RestingOrder(
                order=engine_pb2.OrderState(
                    order_id="rest-sell",
                    user_id="alice",
                    symbol="ACME",
                    side=SELL,
                    type=LIMIT,
                    time_in_force=GFD,
                    price_ticks=105,
                    quantity=1,
                    status=OrderStatus.NEW,
                    created_ns=7,
                    updated_ns=7,
                )
            ),
        ],
    )


def test_format_0_snapshot_restores_with_integer_cost_and_realized_pnl():
    engine = restore_engine(round_trip(format_0_snapshot()))

    alice = engine.accounts["alice"].positions["ACME"]
    assert (alice.quantity, alice.reserved, alice.cost, alice.realized_pnl) == (
        3,
        1,
        30_100,
        -15_000,
    )
    bob = engine.accounts["bob"].positions["ACME"]
    assert (bob.quantity, bob.cost, bob.realized_pnl) == (-4, -100_000, 3_333)  # signed like it
    assert all(
        type(value) is int
        for account in engine.accounts.values()
        for position in account.positions.values()
        for value in (position.cost, position.realized_pnl)
    )


def test_format_0_snapshot_takes_settings_from_their_old_fields():
    engine = restore_engine(round_trip(format_0_snapshot()))

    assert engine.settings == ExchangeSettings(rules_version=0, short_limit=5, max_open_orders=3)


def test_format_0_snapshot_takes_admin_and_api_keys_from_the_users_list():
    engine = restore_engine(round_trip(format_0_snapshot()))

    keys = {user: (a.admin, a.api_key_sha256) for user, a in engine.accounts.items()}
    assert keys == {"alice": (False, KEY), "bob": (True, "cd" * 32), "carol": (False, "")}


def test_format_0_snapshot_restores_books_and_what_open_orders_hold():
    engine = restore_engine(round_trip(format_0_snapshot()))

    acme = engine.symbols["ACME"]
    assert acme.book.bids.depth() == [(98, 2, 1)] and acme.book.asks.depth() == [(105, 1, 1)]
    assert (acme.sequence, acme.trade_count, acme.last, acme.volume) == (17, 4, 103, 9)
    assert engine.open_order_counts == {"alice": 2}
    assert engine.exchange_sequence == 0 and engine.client_orders == {}
    # The short limit of 5 from the old field: carol, holding nothing, may not sell 6.
    events = engine.place_order("x", "carol", "ACME", SELL, LIMIT, IOC, 98, 6, 100)
    assert (events[0].reason, events[0].order.order_id) == (Reason.INSUFFICIENT_POSITION, "x")
    events = engine.place_order("y", "", "ACME", SELL, LIMIT, IOC, 98, 2, 100)
    fills = [e for e in events if isinstance(e, OrderFilled) and e.order.order_id == "rest-buy"]
    assert [(f.filled_quantity, f.status) for f in fills] == [(3, OrderStatus.FILLED)]
    assert engine.accounts["alice"].reserved_cash == 0


def test_a_converted_format_0_engine_snapshots_in_the_current_format():
    engine = restore_engine(format_0_snapshot())

    snapshot = snapshot_engine(engine)

    assert snapshot.format_version == SNAPSHOT_FORMAT
    assert state_of(CommandHandler(restore_engine(round_trip(snapshot)))) == state_of(
        CommandHandler(engine)
    )


def test_a_converted_format_0_account_has_pnl_equal_to_realized_plus_unrealized():
    """Format 0 kept no starting value: it becomes cash + cost - realized P&L, the one value
    under which P&L is realized plus unrealized, at any mark."""
    engine = restore_engine(format_0_snapshot())

    starting = {user: account.starting_value for user, account in engine.accounts.items()}
    assert starting == {
        "alice": CASH + 30_100 + 15_000,
        "bob": 5_000_000 - 100_000 - 3_333,
        "carol": 1_000,
    }

    for mark in (1, 103, 250):
        for user, account in engine.accounts.items():
            equity = account.cash
            total = 0
            for position in account.positions.values():
                value = position.quantity * mark * 100
                equity += value
                total += position.realized_pnl + value - position.cost
            assert equity - account.starting_value == total, (user, mark)
