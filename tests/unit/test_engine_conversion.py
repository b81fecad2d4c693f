"""ETF conversions: creating units from a basket's components and redeeming them, one behaviour
per test, with exact integer figures.

TRIO is 1 ALPHA + 2 BETA per unit, for a flat fee of 5.00 per request. Conversions take what
no open SELL holds (never the short limit), respect the position limit for what they give
(open BUYs counted), pay the fee from cash no open BUY holds, move the cost basis with the
shares, and are all or nothing: a rejection moves nothing. Snapshots and replays give the same
state and the same bytes.
"""

from __future__ import annotations

import itertools

import pytest

from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    CommandRefused,
    ConversionExecuted,
    ConversionLeg,
    ConversionRejected,
    Grant,
    SymbolAdded,
)
from engine_svc.orders import Direction, OrderType, Reason, Refusal, Side, TimeInForce
from engine_svc.rules import ExchangeSettings
from engine_svc.scoring import equity
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex import participant
from stream_svc.json_messages import to_json
from stream_svc.messages import batch_messages
from tests.unit.test_engine_v2_snapshots import full_state

CREATE, REDEEM = Direction.CREATE, Direction.REDEEM
BUY, SELL = Side.BUY, Side.SELL
LIMIT, GFD, IOC = OrderType.LIMIT, TimeInForce.GFD, TimeInForce.IOC
FEE = 50_000  # 5.00 in cash units
CASH = 100_000_000  # 10,000.00
TICK_CASH = 100  # cash units per tick of 0.01
BASKET = (("ALPHA", 1), ("BETA", 2))

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    """ALPHA (40.00) and BETA (25.00), TRIO = 1 ALPHA + 2 BETA; alice holds 100 ALPHA and 200
    BETA at those prices, bob only cash."""
    engine = MatchingEngine(ExchangeSettings(rules_version=2, **settings), market_open=True)
    engine.add_symbol("ALPHA", 0, reference_price=4_000)
    engine.add_symbol("BETA", 0, reference_price=2_500)
    engine.add_symbol("TRIO", 0, basket=BASKET, conversion_fee=FEE)
    grants = (Grant("ALPHA", 100, 4_000), Grant("BETA", 200, 2_500))
    engine.create_account("alice", CASH, 0, grants=grants)
    engine.create_account("bob", CASH, 0)
    return engine


def convert(engine, user, direction, quantity, symbol="TRIO", now=1):
    return engine.convert(f"c{next(_ids)}", user, symbol, direction, quantity, now)


def place(engine, user, symbol, side, price, quantity, tif=GFD, now=1):
    order_id = f"o{next(_ids)}"
    return engine.place_order(order_id, user, symbol, side, LIMIT, tif, price, quantity, now)


def trade_at(engine, symbol, price):
    """A trade between user-less flows: sets the symbol's last price (and so its mark)."""
    place(engine, "", symbol, SELL, price, 1)
    place(engine, "", symbol, BUY, price, 1, tif=IOC)


def holdings(engine, user) -> dict[str, tuple[int, int, int]]:
    """symbol -> (quantity, cost, realized P&L)."""
    positions = engine.accounts[user].positions
    return {s: (p.quantity, p.cost, p.realized_pnl) for s, p in positions.items() if p.quantity}


def engine_state(engine) -> tuple:
    handler = CommandHandler(engine)
    baskets = [(s.symbol, s.basket, s.conversion_fee) for s in engine.symbols.values()]
    return full_state(handler), baskets


def rejection(events) -> tuple[Reason, str]:
    (event,) = events
    assert isinstance(event, ConversionRejected)
    return event.reason, event.message


# ---- creating and redeeming -----------------------------------------------------------------


def test_create_takes_the_components_and_gives_etf_units():
    engine = new_engine()
    (event,) = convert(engine, "alice", CREATE, 10)
    assert isinstance(event, ConversionExecuted)
    assert (event.symbol, event.user_id, event.direction, event.quantity) == (
        "TRIO",
        "alice",
        CREATE,
        10,
    )
    assert event.legs == (
        ConversionLeg("TRIO", 10, 9_000_000, 10),
        ConversionLeg("ALPHA", -10, -4_000_000, 90),
        ConversionLeg("BETA", -20, -5_000_000, 180),
    )
    assert (event.fee, event.realized_pnl, event.cash) == (FEE, 0, CASH - FEE)
    assert holdings(engine, "alice") == {
        "ALPHA": (90, 36_000_000, 0),
        "BETA": (180, 45_000_000, 0),
        "TRIO": (10, 9_000_000, 0),
    }


def test_redeem_gives_the_components_back():
    engine = new_engine()
    convert(engine, "alice", CREATE, 10)
    (event,) = convert(engine, "alice", REDEEM, 4)
    assert isinstance(event, ConversionExecuted)
    assert [(leg.symbol, leg.quantity, leg.position) for leg in event.legs] == [
        ("TRIO", -4, 6),
        ("ALPHA", 4, 94),
        ("BETA", 8, 188),
    ]
    assert engine.accounts["alice"].cash == CASH - 2 * FEE


def test_the_etf_carries_its_basket_and_fee_in_the_listing():
    engine = MatchingEngine(ExchangeSettings(rules_version=2))
    engine.add_symbol("BETA", 0)
    engine.add_symbol("ALPHA", 0)
    (added,) = engine.add_symbol("TRIO", 0, basket=(("BETA", 2), ("ALPHA", 1)), conversion_fee=7)
    assert isinstance(added, SymbolAdded)
    assert (added.basket, added.conversion_fee) == (BASKET, 7)  # components by symbol


def test_a_symbol_without_a_basket_does_not_convert():
    engine = new_engine()
    reason, message = rejection(convert(engine, "alice", CREATE, 1, symbol="ALPHA"))
    assert reason == Reason.NOT_CONVERTIBLE
    assert message == "ALPHA has no basket: only an ETF listed with one converts"


# ---- what a conversion may take ---------------------------------------------------------------


def test_create_takes_only_shares_no_open_sell_holds():
    engine = new_engine()
    place(engine, "alice", "ALPHA", SELL, 9_000, 95)
    before = engine_state(engine)
    reason, message = rejection(convert(engine, "alice", CREATE, 10))
    assert reason == Reason.INSUFFICIENT_POSITION
    assert message == (
        "ALPHA: the conversion needs 10, 5 available (100 held, 95 of them for open SELL orders)"
    )
    assert engine_state(engine) == before
    assert isinstance(convert(engine, "alice", CREATE, 5)[0], ConversionExecuted)


def test_the_short_limit_is_for_selling_not_for_converting():
    engine = new_engine(short_limit=50)
    reason, _ = rejection(convert(engine, "bob", CREATE, 1))
    assert reason == Reason.INSUFFICIENT_POSITION
    assert holdings(engine, "bob") == {}


def test_redeem_takes_only_units_no_open_sell_holds():
    engine = new_engine()
    convert(engine, "alice", CREATE, 10)
    place(engine, "alice", "TRIO", SELL, 10_000, 7)
    reason, message = rejection(convert(engine, "alice", REDEEM, 4))
    assert reason == Reason.INSUFFICIENT_POSITION
    assert message.startswith("TRIO: the conversion needs 4, 3 available")
    assert isinstance(convert(engine, "alice", REDEEM, 3)[0], ConversionExecuted)


def test_the_position_limit_counts_open_buys_of_what_is_received():
    engine = new_engine(position_limit=15)
    engine.create_account("carol", CASH, 0, grants=(Grant("ALPHA", 12, 0), Grant("BETA", 24, 0)))
    assert isinstance(convert(engine, "carol", CREATE, 10)[0], ConversionExecuted)
    place(engine, "carol", "TRIO", BUY, 8_000, 4)  # rests: nobody sells
    reason, message = rejection(convert(engine, "carol", CREATE, 2))
    assert reason == Reason.POSITION_LIMIT
    assert message == (
        "TRIO: receiving 2 would take the position to 16 (open BUY orders counted), over the "
        "position limit of 15"
    )
    assert isinstance(convert(engine, "carol", CREATE, 1)[0], ConversionExecuted)


def test_the_position_limit_applies_to_each_component_received():
    engine = new_engine(position_limit=15)
    engine.create_account("carol", CASH, 0, grants=(Grant("ALPHA", 12, 0), Grant("BETA", 24, 0)))
    convert(engine, "carol", CREATE, 10)  # ALPHA 2, BETA 4, TRIO 10
    reason, message = rejection(convert(engine, "carol", REDEEM, 10))
    assert reason == Reason.POSITION_LIMIT
    assert message.startswith("BETA: receiving 20 would take the position to 24")
    assert isinstance(convert(engine, "carol", REDEEM, 5)[0], ConversionExecuted)


def test_the_fee_needs_cash_no_open_buy_holds():
    engine = new_engine()
    grants = (Grant("ALPHA", 1, 0), Grant("BETA", 2, 0))
    engine.create_account("erin", FEE + 40_000, 0, grants=grants)  # 9.00
    place(engine, "erin", "ALPHA", BUY, 401, 1)  # holds 4.01 of it
    reason, message = rejection(convert(engine, "erin", CREATE, 1))
    assert reason == Reason.INSUFFICIENT_CASH
    assert message == "the conversion fee of 5 is more than the available cash of 4.99"


# ---- cash, fees and cost basis -----------------------------------------------------------


def test_the_fee_is_flat_per_request_and_goes_to_the_fee_account():
    engine = new_engine()
    total = sum(account.cash for account in engine.accounts.values())
    convert(engine, "alice", CREATE, 1)
    convert(engine, "alice", CREATE, 50)
    convert(engine, "alice", REDEEM, 20)
    alice = engine.accounts["alice"]
    assert (alice.fees_paid, engine.fees_collected) == (3 * FEE, 3 * FEE)
    cash = sum(account.cash for account in engine.accounts.values())
    assert cash + engine.fees_collected == total


def test_a_rejected_conversion_pays_no_fee():
    engine = new_engine()
    convert(engine, "alice", CREATE, 1_000)  # needs 1,000 ALPHA
    assert (engine.accounts["alice"].fees_paid, engine.fees_collected) == (0, 0)


def test_units_and_components_move_at_the_basket_ratio():
    engine = new_engine()
    convert(engine, "alice", CREATE, 30)
    convert(engine, "alice", REDEEM, 12)
    held = {symbol: quantity for symbol, (quantity, _, _) in holdings(engine, "alice").items()}
    assert held == {"ALPHA": 100 - 18, "BETA": 200 - 36, "TRIO": 18}
    # Counting each unit as its basket, alice holds what she was granted.
    assert (held["ALPHA"] + held["TRIO"], held["BETA"] + 2 * held["TRIO"]) == (100, 200)


def test_pnl_moves_by_the_fee_only_and_nothing_is_realized():
    engine = new_engine()
    trade_at(engine, "ALPHA", 4_200)
    trade_at(engine, "BETA", 2_450)
    trade_at(engine, "TRIO", 9_300)
    alice = engine.accounts["alice"]

    def pnl() -> int:
        return equity(alice, engine.marks()) - alice.starting_value

    before = pnl()
    convert(engine, "alice", CREATE, 10)
    convert(engine, "alice", REDEEM, 3)
    assert alice.realized_pnl == 0
    # At the marks TRIO is worth 93.00 and its basket 91.00: the units are valued at their own
    # mark, so equity moves by the fees plus (93 - 91) on each unit still held.
    assert pnl() == before - 2 * FEE + 7 * (9_300 - 9_100) * TICK_CASH


def test_created_units_cost_what_their_components_cost():
    engine = new_engine()
    engine.create_account("carol", CASH, 0, grants=(Grant("ALPHA", 3, 3_900), Grant("BETA", 7, 0)))
    (event,) = convert(engine, "carol", CREATE, 2)
    # ALPHA: 2 of 3 at 39.00; BETA: 4 of 7 at 25.00.
    assert event.legs[0] == ConversionLeg("TRIO", 2, 2 * 390_000 + 4 * 250_000, 2)
    assert holdings(engine, "carol")["TRIO"] == (2, 1_780_000, 0)
    assert engine.accounts["carol"].positions["TRIO"].average_price_units() == 890_000


def test_given_shares_leave_at_their_average_cost_rounded_down():
    engine = new_engine()
    engine.create_account("carol", CASH, 0, grants=(Grant("ALPHA", 3, 0), Grant("BETA", 6, 0)))
    engine.accounts["carol"].positions["ALPHA"].cost = 1_000_001  # as three fills could leave it
    (event,) = convert(engine, "carol", CREATE, 1)
    assert event.legs[1] == ConversionLeg("ALPHA", -1, -333_333, 2)
    assert holdings(engine, "carol")["ALPHA"] == (2, 666_668, 0)


def test_redeemed_units_share_their_cost_by_value_at_the_marks():
    engine = new_engine()
    convert(engine, "alice", CREATE, 10)  # 10 TRIO at 9,000,000
    trade_at(engine, "ALPHA", 4_200)  # marks: ALPHA 42.00, BETA 24.00
    trade_at(engine, "BETA", 2_400)
    (event,) = convert(engine, "alice", REDEEM, 5)
    # 4,500,000 leaves with the 5 units: 420,000 of every 900,000 to ALPHA, the rest to BETA.
    assert event.legs == (
        ConversionLeg("TRIO", -5, -4_500_000, 5),
        ConversionLeg("ALPHA", 5, 2_100_000, 95),
        ConversionLeg("BETA", 10, 2_400_000, 190),
    )
    assert sum(leg.cost for leg in event.legs) == 0


def test_without_marks_redeemed_cost_is_shared_by_share_count():
    engine = MatchingEngine(ExchangeSettings(rules_version=2))
    engine.add_symbol("ALPHA", 0)  # no reference price, no trade: no mark
    engine.add_symbol("BETA", 0)
    engine.add_symbol("TRIO", 0, basket=BASKET)
    engine.create_account("carol", CASH, 0, grants=(Grant("TRIO", 3, 9_001),))
    (event,) = convert(engine, "carol", REDEEM, 1)
    assert event.legs == (
        ConversionLeg("TRIO", -1, -900_100, 2),
        ConversionLeg("ALPHA", 1, 300_033, 1),  # a third, rounded down
        ConversionLeg("BETA", 2, 600_067, 2),  # the rest
    )
    assert event.fee == 0


def test_creating_into_a_short_etf_covers_it_and_realizes_the_difference():
    engine = new_engine(short_limit=10)
    place(engine, "", "TRIO", BUY, 9_500, 4)
    place(engine, "alice", "TRIO", SELL, 9_500, 4)  # alice is short 4 TRIO sold at 95.00
    assert holdings(engine, "alice")["TRIO"] == (-4, -3_800_000, 0)
    (event,) = convert(engine, "alice", CREATE, 10)  # units at 90.00
    assert event.realized_pnl == 4 * (950_000 - 900_000)
    assert holdings(engine, "alice")["TRIO"] == (6, 6 * 900_000, 200_000)
    assert event.legs[0] == ConversionLeg("TRIO", 10, 9_000_000, 6)


def test_redeeming_into_a_short_component_covers_it():
    engine = new_engine(short_limit=10)
    engine.create_account("carol", CASH, 0, grants=(Grant("TRIO", 2, 9_000),))
    place(engine, "", "BETA", BUY, 2_600, 3)
    place(engine, "carol", "BETA", SELL, 2_600, 3)  # short 3 BETA at 26.00
    trade_at(engine, "ALPHA", 4_000)
    trade_at(engine, "BETA", 2_500)
    (event,) = convert(engine, "carol", REDEEM, 2)  # 4 BETA come in at 25.00 each
    assert event.realized_pnl == 3 * (260_000 - 250_000)
    assert holdings(engine, "carol")["BETA"] == (1, 250_000, 30_000)


# ---- when conversions are refused -------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "direction", "quantity", "reason"),
    [
        ("alice", CREATE, 0, Reason.INVALID_ORDER),
        ("alice", CREATE, 1_000_001, Reason.INVALID_ORDER),
        ("alice", 7, 1, Reason.INVALID_ORDER),
        ("nobody", CREATE, 1, Reason.UNKNOWN_USER),
        ("", REDEEM, 1, Reason.UNKNOWN_USER),
    ],
)
def test_invalid_conversions_and_unknown_users_are_rejected(user, direction, quantity, reason):
    engine = new_engine()
    before = engine_state(engine)
    assert rejection(convert(engine, user, direction, quantity))[0] == reason
    assert engine_state(engine) == before


def test_quantities_are_whole_lots_of_the_etf():
    engine = new_engine()
    engine.add_symbol("FUND", 0, lot_size=10, basket=(("ALPHA", 1),))
    reason, message = rejection(convert(engine, "alice", CREATE, 15, symbol="FUND"))
    assert reason == Reason.INVALID_ORDER
    assert "multiple of FUND's lot size 10" in message
    assert isinstance(convert(engine, "alice", CREATE, 20, symbol="FUND")[0], ConversionExecuted)


def test_an_unknown_symbol_is_rejected_in_no_sequence():
    engine = new_engine()
    (event,) = convert(engine, "alice", CREATE, 1, symbol="NOPE")
    assert (event.reason, event.sequence, event.message) == (
        Reason.UNKNOWN_SYMBOL,
        0,
        "symbol NOPE is not listed",
    )


def test_a_closed_market_converts_nothing():
    engine = new_engine()
    engine.close_market(1)
    assert rejection(convert(engine, "alice", CREATE, 1)) == (
        Reason.MARKET_CLOSED,
        "the market is closed",
    )


@pytest.mark.parametrize("halted", ["TRIO", "BETA"])
def test_a_halted_etf_or_component_converts_nothing(halted):
    engine = new_engine()
    engine.halt(1, halted)
    assert rejection(convert(engine, "alice", CREATE, 1)) == (
        Reason.SYMBOL_HALTED,
        f"trading is halted in {halted}",
    )


def test_a_disabled_user_converts_nothing():
    engine = new_engine()
    engine.disable_user("alice", 1)
    assert rejection(convert(engine, "alice", CREATE, 1))[0] == Reason.USER_DISABLED


def test_the_rejection_carries_the_etfs_sequence_and_moves_nothing():
    engine = new_engine()
    sequence = engine.symbols["TRIO"].sequence
    (event,) = convert(engine, "bob", CREATE, 1)
    assert (event.sequence, event.reason) == (sequence, Reason.INSUFFICIENT_POSITION)
    assert engine.symbols["TRIO"].sequence == sequence


# ---- listing an ETF ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("basket", "fee", "refusal", "message"),
    [
        ((("ZED", 1),), 0, Refusal.INVALID_ARGUMENT, "basket: symbol ZED is not listed"),
        ((("TRIO", 1),), 0, Refusal.INVALID_ARGUMENT, "basket: TRIO has a basket itself"),
        ((("FUND", 1),), 0, Refusal.INVALID_ARGUMENT, "basket: FUND cannot be a component"),
        ((("ALPHA", 0),), 0, Refusal.INVALID_ARGUMENT, "basket: ALPHA must be a whole number"),
        ((("LOTS", 3),), 0, Refusal.INVALID_ARGUMENT, "basket: 3 LOTS per unit times lotSize 1"),
        ((("ALPHA", 1), ("ALPHA", 2)), 0, Refusal.INVALID_ARGUMENT, "basket names a symbol twice"),
        ((), 10, Refusal.INVALID_ARGUMENT, "conversionFee applies only to a symbol listed with"),
        ((("ALPHA", 1),), -1, Refusal.INVALID_ARGUMENT, "conversionFee must not be negative"),
    ],
)
def test_an_etf_lists_whole_shares_of_listed_symbols_that_are_no_etfs(
    basket, fee, refusal, message
):
    engine = new_engine()
    engine.add_symbol("LOTS", 0, lot_size=5)
    (event,) = engine.add_symbol("FUND", 0, basket=basket, conversion_fee=fee)
    assert isinstance(event, CommandRefused)
    assert event.reason == refusal
    assert event.message.startswith(message)
    assert "FUND" not in engine.symbols


def test_components_in_whole_lots_per_lot_of_the_etf_are_listed():
    engine = new_engine()
    engine.add_symbol("LOTS", 0, lot_size=5)
    (event,) = engine.add_symbol("FUND", 0, lot_size=5, basket=(("LOTS", 3),))
    assert isinstance(event, SymbolAdded)


# ---- the log: commands, snapshots and replay --------------------------------------------------


def commands() -> list[engine_pb2.EngineCommand]:
    """Listings, accounts, trades that set marks, and conversions both ways, some rejected."""
    settings = engine_pb2.ExchangeSettings(rules_version=2, short_limit=10, position_limit=500)
    basket = [engine_pb2.BasketComponent(symbol=s, shares=n) for s, n in BASKET]
    grants = [
        engine_pb2.PositionGrant(symbol="ALPHA", quantity=100, price_ticks=4_000),
        engine_pb2.PositionGrant(symbol="BETA", quantity=200, price_ticks=2_500),
    ]
    steps: list[dict] = [
        {"configure_exchange": engine_pb2.ConfigureExchangeCommand(settings=settings)},
        {"add_symbol": engine_pb2.AddSymbolCommand(symbol="ALPHA", reference_price_ticks=4_000)},
        {"add_symbol": engine_pb2.AddSymbolCommand(symbol="BETA", reference_price_ticks=2_500)},
        {
            "add_symbol": engine_pb2.AddSymbolCommand(
                symbol="TRIO", basket=basket, conversion_fee_units=FEE
            )
        },
        {
            "create_account": engine_pb2.CreateAccountCommand(
                user_id="alice", cash_units=CASH, grants=grants
            )
        },
        {"create_account": engine_pb2.CreateAccountCommand(user_id="bob", cash_units=CASH)},
    ]
    orders = [("bob", "ALPHA", BUY, 4_100, 5), ("alice", "ALPHA", SELL, 4_100, 5)]
    orders += [("bob", "TRIO", BUY, 9_200, 3), ("alice", "TRIO", SELL, 9_200, 6)]
    for index, (user, symbol, side, price, quantity) in enumerate(orders):
        place = engine_pb2.PlaceOrderCommand(
            order_id=f"o{index}",
            user_id=user,
            symbol=symbol,
            side=side,
            type=LIMIT,
            time_in_force=GFD,
            price_ticks=price,
            quantity=quantity,
        )
        steps.append({"place_order": place})
    conversions = [
        ("alice", CREATE, 20),
        ("alice", REDEEM, 7),
        ("bob", REDEEM, 3),
        ("bob", CREATE, 4),
        ("alice", REDEEM, 100),
        ("alice", CREATE, 7),
    ]
    for index, (user, direction, quantity) in enumerate(conversions):
        convert = engine_pb2.ConvertCommand(
            conversion_id=f"c{index}",
            user_id=user,
            symbol="TRIO",
            direction=direction,
            quantity=quantity,
        )
        steps.append({"convert": convert})
    return [
        engine_pb2.EngineCommand(timestamp_ns=1_000 * (n + 1), **step)
        for n, step in enumerate(steps)
    ]


def test_conversions_cross_the_log_as_their_events():
    handler = CommandHandler(MatchingEngine())
    kinds = [
        [event.WhichOneof("event") for event in handler.batch(command).events]
        for command in commands()
    ]
    assert kinds[-6:] == [
        ["conversion_executed"],
        ["conversion_executed"],
        ["conversion_executed"],
        ["conversion_rejected"],
        ["conversion_rejected"],
        ["conversion_executed"],
    ]


def test_a_replay_of_the_commands_gives_the_same_bytes():
    first, second = CommandHandler(MatchingEngine()), CommandHandler(MatchingEngine())
    logged = [first.batch(command).SerializeToString() for command in commands()]
    replayed = []
    for record in logged:
        command = engine_pb2.EngineBatch.FromString(record).command
        replayed.append(second.batch(command).SerializeToString())
    assert replayed == logged
    assert engine_state(second.engine) == engine_state(first.engine)


@pytest.mark.parametrize("split_at", [6, 10, 12, 14])
def test_a_restored_snapshot_converts_as_the_original(split_at):
    steps = commands()
    original = CommandHandler(MatchingEngine())
    for command in steps[:split_at]:
        original.batch(command)
    snapshot = original.snapshot().SerializeToString()
    restored = CommandHandler.restore(engine_pb2.EngineSnapshot.FromString(snapshot))
    assert engine_state(restored.engine) == engine_state(original.engine)
    for command in steps[split_at:]:
        assert restored.batch(command) == original.batch(command)
    assert engine_state(restored.engine) == engine_state(original.engine)
    assert restored.snapshot().SerializeToString() == original.snapshot().SerializeToString()


# ---- what participants see --------------------------------------------------------------------


def test_participants_see_the_conversion_and_the_basket():
    handler = CommandHandler(MatchingEngine())
    batches = [handler.batch(command) for command in commands()]
    listing = batches[3].events[0]
    info = participant.symbol_info(
        "TRIO",
        listing.symbol_added.tick_size,
        listing.symbol_added.lot_size,
        types_pb2.OPEN,
        0,
        [(c.symbol, c.shares) for c in listing.symbol_added.basket],
        listing.symbol_added.conversion_fee_units,
    )
    assert (dict(info.basket), info.conversion_fee) == ({"ALPHA": 1, "BETA": 2}, 5.0)

    executed = participant.conversion(batches[-6].events[0])
    assert (executed.status, executed.fee, executed.reject_reason) == (types_pb2.FILLED, 5.0, "")
    assert [(leg.symbol, leg.quantity, leg.position) for leg in executed.legs] == [
        ("TRIO", 20, 17),  # it covered the 3 TRIO sold short
        ("ALPHA", -20, 75),
        ("BETA", -40, 160),
    ]
    rejected = participant.conversion(batches[-3].events[0])
    assert (rejected.status, rejected.reject_reason, rejected.fee) == (
        types_pb2.REJECTED,
        "INSUFFICIENT_POSITION",
        0.0,
    )
    assert rejected.message.startswith("BETA: the conversion needs 8, 6 available")


def test_the_order_updates_stream_carries_the_conversion_to_its_owner():
    handler = CommandHandler(MatchingEngine())
    batches = [handler.batch(command) for command in commands()]
    messages = batch_messages(batches[-6], lambda symbol: 0.01)
    (update,) = messages.orders
    assert update.user_id == "alice"
    assert update.response.WhichOneof("payload") == "conversion"
    assert messages.market == [] and messages.exchange_events == []
    text = to_json(streams_pb2.StreamOrderUpdatesResponse(conversion=update.response.conversion))
    assert text.startswith('{"type":"conversion","conversionId":"c0","userId":"alice"')
    assert '"direction":"CREATE"' in text and '"status":"FILLED"' in text
