"""Rules version 2: snapshots (format 2) keep fees, limits, roles, disabled users, the
competition and the scores; a restored engine is in the same state and answers every later
command with the same events, a snapshot taken in the middle of a round included.

Everything goes through the CommandHandler as the EngineCommand protos a gateway sends, and the
snapshot through its serialized bytes.
"""

from __future__ import annotations

from engine_svc.codec import SNAPSHOT_FORMAT, restore_engine, snapshot_engine
from engine_svc.engine import MatchingEngine
from engine_svc.events import ScoresSampled
from engine_svc.orders import OrderType, Reason, Side, TimeInForce
from engine_svc.rules import ExchangeSettings
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, GTC = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.GTC
MINUTE = 60 * 1_000_000_000
SECOND = 1_000_000_000
SETTINGS = engine_pb2.ExchangeSettings(
    rules_version=2,
    short_limit=5,
    position_limit=60,
    maker_fee_centi_bps=-5,
    taker_fee_centi_bps=30,
    mark_max_spread_ticks=3,
)


def full_state(handler: CommandHandler) -> tuple:
    """Everything that decides the engine's next events, rules version 2 included."""
    engine = handler.engine
    symbols = []
    for state in engine.symbols.values():
        orders = [
            (
                order.terms,
                order.remaining,
                order.filled_quantity,
                order.filled_notional,
                order.status,
                order.reason,
                order.updated_at,
                order.reserved_cash,
            )
            for book_side in (state.book.bids, state.book.asks)
            for order in book_side.iter_orders()
        ]
        symbols.append(
            (
                state.symbol,
                state.tick_size,
                state.tick_cash,
                state.lot_size,
                state.reference_price,
                state.sequence,
                state.halted,
                state.trade_count,
                (state.last, state.last_quantity, state.volume, state.open, state.high, state.low),
                state.last_quote,
                state.book.bids.depth(),
                state.book.asks.depth(),
                orders,
            )
        )
    accounts = {
        user: (
            account.cash,
            account.reserved_cash,
            account.starting_value,
            account.starting_cash,
            account.grants,
            account.admin,
            account.api_key_sha256,
            account.role,
            account.disabled,
            account.fees_paid,
            {
                symbol: (p.quantity, p.reserved, p.buying, p.cost, p.realized_pnl)
                for symbol, p in account.positions.items()
            },
        )
        for user, account in engine.accounts.items()
    }
    competition = engine.competition
    scores = [
        (user, *(getattr(score, name) for name in score.__slots__))
        for user, score in engine.scores.items()
    ]
    sessions = {
        session_id: (ledger.applied_through, sorted(ledger.applied_after), ledger.last_applied_ns)
        for session_id, ledger in handler.ledger.sessions.items()
    }
    return (
        engine.settings,
        engine.market_open,
        engine.exchange_sequence,
        engine.fees_collected,
        engine.last_sample_minute,
        tuple(getattr(competition, name) for name in competition.__slots__),
        scores,
        symbols,
        accounts,
        list(engine.open_orders),  # in arrival order: cancel-all goes by it
        {user: count for user, count in engine.open_order_counts.items() if count},
        dict(engine.client_orders),
        sessions,
    )


def restored(handler: CommandHandler) -> CommandHandler:
    snapshot = handler.snapshot()
    return CommandHandler.restore(
        engine_pb2.EngineSnapshot.FromString(snapshot.SerializeToString())
    )


class Driver:
    """Builds EngineCommands; numbers them in one gateway session."""

    def __init__(self) -> None:
        self.sequence = 0
        self.next_order = 0

    def command(self, now: int, **command) -> engine_pb2.EngineCommand:
        self.sequence += 1
        return engine_pb2.EngineCommand(
            timestamp_ns=now, session_id="gw-1", session_sequence=self.sequence, **command
        )

    def order(self, now, user, symbol, side, price, quantity, tif=GFD, type=LIMIT, client=""):
        self.next_order += 1
        return self.command(
            now,
            place_order=engine_pb2.PlaceOrderCommand(
                order_id=f"o{self.next_order}",
                user_id=user,
                symbol=symbol,
                side=side,
                type=type,
                time_in_force=tif,
                price_ticks=price,
                quantity=quantity,
                client_order_id=client,
            ),
        )


def opening(d: Driver) -> list[engine_pb2.EngineCommand]:
    """Settings, symbols, every kind of account, a scenario and round 1 under way: resting
    orders of both sides, fills with fees and a rebate, a disabled user, a new API key, news,
    and scores sampled over three minutes."""
    grants = [
        engine_pb2.PositionGrant(symbol="ACME", quantity=20),
        engine_pb2.PositionGrant(symbol="BETA", quantity=40, price_ticks=21),
    ]
    return [
        d.command(0, configure_exchange=engine_pb2.ConfigureExchangeCommand(settings=SETTINGS)),
        d.command(
            0, add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", reference_price_ticks=100)
        ),
        d.command(
            0,
            add_symbol=engine_pb2.AddSymbolCommand(
                symbol="BETA", tick_size="0.05", lot_size=5, reference_price_ticks=20
            ),
        ),
        d.command(
            1,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="alice", cash_units=3_000_000, grants=grants, api_key_sha256="ka"
            ),
        ),
        d.command(
            1, create_account=engine_pb2.CreateAccountCommand(user_id="bob", cash_units=900_000)
        ),
        d.command(
            1,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="carol", cash_units=500_000, grants=grants[:1]
            ),
        ),
        d.command(
            1,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="bot-1", cash_units=5_000_000, grants=grants, role=1
            ),
        ),
        d.command(1, create_account=engine_pb2.CreateAccountCommand(user_id="ops", admin=True)),
        d.command(
            2,
            set_scenario=engine_pb2.SetScenarioCommand(
                state=1,
                name="demo",
                seed=7,
                digest="d1g",
                rounds=3,
                participant_cash_units=300_000,
                participant_grants=grants[:1],
            ),
        ),
        d.command(2, set_scenario=engine_pb2.SetScenarioCommand(state=2)),
        d.command(
            2,
            create_account=engine_pb2.CreateAccountCommand(user_id="dave", scenario_terms=True),
        ),
        d.command(3, start_round=engine_pb2.StartRoundCommand(round=1, ends_at_ns=20 * MINUTE)),
        d.order(4, "bot-1", "ACME", SELL, 101, 15, tif=GTC),
        d.order(5, "bot-1", "ACME", BUY, 99, 15, tif=GTC),
        d.order(6, "alice", "ACME", BUY, 98, 12, client="c1"),
        d.order(7, "bob", "ACME", BUY, 101, 6),  # takes 6 of the bot's ask
        d.order(8, "carol", "ACME", SELL, 102, 10, tif=GTC),
        d.order(MINUTE + 1, "alice", "BETA", SELL, 22, 15, tif=GTC),
        d.order(MINUTE + 2, "bob", "BETA", BUY, 22, 10),  # alice's rebate
        d.order(MINUTE + 3, "carol", "ACME", BUY, 0, 4, tif=IOC, type=MARKET),
        d.command(MINUTE + 4, disable_user=engine_pb2.DisableUserCommand(user_id="carol")),
        d.command(
            MINUTE + 5,
            set_api_key=engine_pb2.SetApiKeyCommand(user_id="alice", api_key_sha256="ka2"),
        ),
        d.command(
            2 * MINUTE,
            publish_news=engine_pb2.PublishNewsCommand(
                news_id="n1",
                headline="ACME beats",
                symbols=["ACME"],
                shock=engine_pb2.NewsShock(price_change=0.03, volatility_multiplier=1.5),
            ),
        ),
        d.order(3 * MINUTE + 1, "bot-1", "ACME", BUY, 100, 10, tif=GTC),
        d.order(3 * MINUTE + 2, "alice", "ACME", SELL, 100, 4, tif=IOC),
    ]


def later(d: Driver) -> list[engine_pb2.EngineCommand]:
    """The rest of round 1, a reset round 2, more trading and its end."""
    return [
        # 16 held + 12 and 31 bid = 59 of the limit of 60: the next bid is over it. The better
        # bid arrives later, so the round 2 reset cancels alice's orders out of book order.
        d.order(3 * MINUTE + 10, "alice", "ACME", BUY, 99, 31),
        d.order(3 * MINUTE + 11, "alice", "ACME", BUY, 101, 9, tif=IOC),
        d.order(3 * MINUTE + 12, "bob", "BETA", BUY, 22, 5, tif=IOC),
        d.order(5 * MINUTE, "carol", "ACME", BUY, 100, 1),  # disabled
        d.command(5 * MINUTE + 1, enable_user=engine_pb2.EnableUserCommand(user_id="carol")),
        d.order(5 * MINUTE + 2, "carol", "ACME", SELL, 99, 5, tif=IOC),
        d.order(5 * MINUTE + 3, "alice", "ACME", BUY, 98, 12, client="c1"),  # duplicate
        d.command(
            6 * MINUTE,
            end_round=engine_pb2.EndRoundCommand(round=1, next_round_starts_at_ns=7 * MINUTE),
        ),
        d.command(6 * MINUTE + 1, set_scenario=engine_pb2.SetScenarioCommand(state=3)),
        d.command(6 * MINUTE + 2, set_scenario=engine_pb2.SetScenarioCommand(state=2)),
        d.command(
            6 * MINUTE + 3,
            publish_news=engine_pb2.PublishNewsCommand(news_id="n1", headline="again"),
        ),
        d.command(
            7 * MINUTE,
            start_round=engine_pb2.StartRoundCommand(
                round=2, ends_at_ns=30 * MINUTE, reset_accounts=True
            ),
        ),
        d.order(7 * MINUTE + 1, "alice", "ACME", SELL, 100, 5, tif=GTC),
        d.order(8 * MINUTE, "bob", "ACME", BUY, 100, 5),
        d.order(8 * MINUTE + 1, "bot-1", "ACME", SELL, 99, 20, tif=GTC),
        d.order(8 * MINUTE + 2, "bot-1", "BETA", SELL, 23, 5, tif=GTC),
        d.order(8 * MINUTE + 3, "bot-1", "BETA", SELL, 24, 5, tif=GTC),
        # The bot's ACME orders arrived ask first, then bids at 99 and 100: not in book order.
        d.command(
            9 * MINUTE,
            cancel_all=engine_pb2.CancelAllCommand(user_id="bot-1", symbol="ACME", is_admin=True),
        ),
        d.command(
            9 * MINUTE + 1,
            cancel_all=engine_pb2.CancelAllCommand(user_id="bot-1", symbol="", is_admin=True),
        ),
        d.command(12 * MINUTE, end_round=engine_pb2.EndRoundCommand(round=2)),
        d.command(12 * MINUTE + 1, start_round=engine_pb2.StartRoundCommand(round=3, ends_at_ns=1)),
        d.command(13 * MINUTE, close_market=engine_pb2.CloseMarketCommand()),
    ]


def run(handler: CommandHandler, commands) -> list[engine_pb2.EngineBatch]:
    return [handler.batch(command) for command in commands]


def test_the_opening_does_what_it_says():
    """The scenario the other tests snapshot really has fees, scores and a round in progress."""
    handler = CommandHandler(MatchingEngine())
    batches = run(handler, opening(Driver()))
    engine = handler.engine

    assert engine.settings.position_limit == 60
    assert engine.fees_collected != 0
    assert engine.competition.round_open and engine.competition.round == 1
    assert engine.accounts["carol"].disabled
    assert engine.accounts["alice"].api_key_sha256 == "ka2"
    assert engine.last_sample_minute == 3
    assert sum(len(b.events) for b in batches if b.events[-1].HasField("scores_sampled")) > 0
    assert any(p.buying for p in engine.accounts["alice"].positions.values())
    assert any(o.reserved_cash for o in engine.open_orders.values())
    assert engine.scores["alice"].changes == 3


def test_a_restored_engine_is_in_the_same_state_mid_round():
    handler = CommandHandler(MatchingEngine())
    run(handler, opening(Driver()))

    copy = restored(handler)

    assert full_state(copy) == full_state(handler)
    assert copy.snapshot() == handler.snapshot()
    assert handler.snapshot().format_version == SNAPSHOT_FORMAT == 2


def test_a_restored_engine_answers_every_later_command_with_the_same_events():
    driver = Driver()
    handler = CommandHandler(MatchingEngine())
    run(handler, opening(driver))
    copy = restored(handler)
    commands = later(driver)

    original_batches = run(handler, commands)
    copy_batches = run(copy, commands)

    assert copy_batches == original_batches
    assert full_state(copy) == full_state(handler)
    kinds = {event.WhichOneof("event") for batch in original_batches for event in batch.events}
    assert {"scores_sampled", "round_ended", "account_reset", "round_started"} <= kinds
    assert {"order_filled", "order_rejected", "command_refused", "user_enabled"} <= kinds
    reasons = {
        event.order_rejected.order.reason
        for batch in original_batches
        for event in batch.events
        if event.HasField("order_rejected")
    }
    assert reasons == {Reason.POSITION_LIMIT, Reason.USER_DISABLED}


def test_restoring_at_every_step_changes_no_event():
    """A snapshot after any command of the whole run, restored, carries on identically."""
    driver = Driver()
    commands = opening(driver) + later(driver)
    reference = CommandHandler(MatchingEngine())
    expected = run(reference, commands)

    for cut in range(1, len(commands)):
        handler = CommandHandler(MatchingEngine())
        run(handler, commands[:cut])
        copy = restored(handler)
        assert full_state(copy) == full_state(handler), cut
        assert run(copy, commands[cut:]) == expected[cut:], cut


def test_the_sample_minute_zero_survives_a_snapshot():
    """A snapshot after the first command (minute 0) must still sample at minute 1; one taken
    before any command must not sample at the first."""
    d = Driver()
    create = engine_pb2.CreateAccountCommand(user_id="alice", cash_units=1_000)
    first = d.command(5, create_account=create)
    nxt = d.command(MINUTE, open_market=engine_pb2.OpenMarketCommand())

    empty = CommandHandler(MatchingEngine())
    assert restored(empty).engine.last_sample_minute is None

    handler = CommandHandler(MatchingEngine())
    handler.apply(first)
    copy = restored(handler)
    assert copy.engine.last_sample_minute == 0

    events = copy.apply(nxt)
    assert [type(e) for e in events] == [ScoresSampled]
    assert events == handler.apply(nxt)


def test_what_open_buys_could_add_is_rebuilt_from_the_open_orders():
    handler = CommandHandler(MatchingEngine())
    run(handler, opening(Driver()))
    alice = handler.engine.accounts["alice"]
    assert alice.positions["ACME"].buying == 12  # the resting GFD bid

    copy = restored(handler)

    assert copy.engine.accounts["alice"].positions["ACME"].buying == 12


def test_a_format_1_snapshot_gives_ranked_accounts_a_fresh_score_and_cash_to_reset_to():
    engine = MatchingEngine(ExchangeSettings(rules_version=1))
    engine.create_account("alice", 1_000, now=0)
    engine.create_account("bot-1", 1_000, now=0, role=1)
    engine.adjust_cash("alice", 500, now=1)
    snapshot = snapshot_engine(engine)
    snapshot.format_version = 1
    del snapshot.scores[:]
    for account in snapshot.accounts:
        account.ClearField("starting_cash_units")

    converted = restore_engine(snapshot)

    assert list(converted.scores) == ["alice"]
    assert converted.accounts["alice"].starting_cash == 1_500


def test_a_restored_engine_cancels_all_of_a_users_orders_in_the_same_order():
    d = Driver()
    commands = [
        d.command(
            0, add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", reference_price_ticks=100)
        ),
        d.command(
            0,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="alice",
                cash_units=1_000_000,
                grants=[engine_pb2.PositionGrant(symbol="ACME", quantity=10)],
            ),
        ),
        d.order(1, "alice", "ACME", SELL, 101, 5),  # o1 arrives first, rests on the ask side
        d.order(2, "alice", "ACME", BUY, 99, 5),  # o2
    ]
    handler = CommandHandler(MatchingEngine())
    run(handler, commands)
    copy = restored(handler)
    disable = d.command(3, disable_user=engine_pb2.DisableUserCommand(user_id="alice"))

    assert copy.batch(disable) == handler.batch(disable)
