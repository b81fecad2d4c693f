"""End-of-round reports: the log's facts as rows (store_svc.records), which round each belongs to
and the reports built from them (store_svc.reports), and the whole way from the pure engine's
events through the database to the reports (store_svc.queries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_svc.codec import event_to_proto
from engine_svc.engine import MatchingEngine
from engine_svc.rules import RULES_VERSION, ExchangeSettings
from engine_svc.scoring import equity
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from store_svc import queries
from store_svc.db import create_db_engine, upgrade_schema, write_rows
from store_svc.records import Rows
from store_svc.reports import (
    WHOLE_EVENT,
    ActivityGroup,
    Event,
    Mark,
    Sample,
    Span,
    Tally,
    build_reports,
    current_event,
    ranking,
    tallies,
    tick_units,
)

MINUTE = 60 * 1_000_000_000


def mark(offset: int, kind: str, round_number: int = 0, scenario: str = "") -> Mark:
    return Mark((offset, 0), kind, round_number, offset * 1000, scenario)


# ---- which round a fact belongs to ----


def test_rounds_run_from_their_start_to_their_end():
    event = current_event([mark(3, "STARTED", 1), mark(9, "ENDED", 1), mark(12, "STARTED", 2)])
    assert event.scenario == "" and event.whole == Span(WHOLE_EVENT, None, None)
    assert event.rounds == (
        Span(1, (3, 0), (9, 0), 3000, 9000),
        Span(2, (12, 0), None, 12000),
    )
    assert event.round_numbers() == [1, 2]


def test_a_loaded_scenario_starts_a_new_event():
    event = current_event(
        [
            mark(1, "LOADED", scenario="calm"),
            mark(2, "STARTED", 1),
            mark(3, "ENDED", 1),
            mark(5, "LOADED", scenario="volatile-news"),
            mark(6, "STARTED", 1),
        ]
    )
    assert event.scenario == "volatile-news"
    assert event.whole == Span(WHOLE_EVENT, (5, 0), None, 5000)
    assert event.rounds == (Span(1, (6, 0), None, 6000),)


def test_a_round_started_again_counts_from_its_last_start():
    event = current_event(
        [mark(2, "STARTED", 1), mark(4, "STARTED", 1), mark(7, "ENDED", 1), mark(8, "ENDED", 1)]
    )
    assert event.rounds == (Span(1, (4, 0), (7, 0), 4000, 7000),)


def test_a_round_not_played_is_a_key_error():
    event = current_event([mark(2, "STARTED", 1)])
    assert event.spans(1) == [event.rounds[0]]
    assert event.spans() == [event.whole, event.rounds[0]]
    with pytest.raises(KeyError):
        event.spans(2)


# ---- tallies and reports ----


def test_tallies_count_orders_fills_and_rejections_by_reason():
    groups = [
        ActivityGroup("alice", "ACME", "ACCEPTED", "", 3, 30, 0, 0),
        ActivityGroup("alice", "ACME", "REJECTED", "INSUFFICIENT_CASH", 2, 20, 0, 0),
        ActivityGroup("alice", "BETA", "REJECTED", "MARKET_CLOSED", 1, 5, 0, 0),
        ActivityGroup("alice", "ACME", "FILL", "", 4, 25, 250_000, 300),
        ActivityGroup("alice", "BETA", "FILL", "", 1, 5, 100, -10),
        ActivityGroup("bob", "BETA", "REJECTED", "POSITION_LIMIT", 1, 5, 0, 0),
    ]
    found = tallies(groups, {"ACME": tick_units("0.01"), "BETA": tick_units("0.05")})
    alice = found["alice"]
    assert (alice.orders, alice.trades, alice.volume) == (6, 5, 30)
    assert alice.notional_units == 250_000 * 100 + 100 * 500
    assert alice.fee_units == 290
    assert alice.rejected == {"INSUFFICIENT_CASH": 2, "MARKET_CLOSED": 1}
    assert alice.limit_breaches == 2
    assert found["bob"].limit_breaches == 1 and found["bob"].orders == 1


def test_a_conversion_counts_with_its_fee_and_is_no_order_or_trade():
    groups = [
        ActivityGroup("alice", "TRIO", "CONVERSION", "", 2, 30, 0, 5_000),
        ActivityGroup("alice", "TRIO", "FILL", "", 1, 10, 1_000, 20),
    ]
    alice = tallies(groups, {"TRIO": tick_units("0.01")})["alice"]
    assert (alice.conversions, alice.orders, alice.trades, alice.volume) == (2, 0, 1, 10)
    assert alice.fee_units == 5_020


def test_a_participants_conversion_becomes_an_activity_row_and_a_bots_does_not():
    def converted(user_id: str) -> engine_pb2.EngineEvent:
        return engine_pb2.EngineEvent(
            symbol="TRIO",
            timestamp_ns=MINUTE,
            conversion_executed=engine_pb2.ConversionExecuted(
                conversion_id="c1", user_id=user_id, quantity=3, fee_units=25_000
            ),
        )

    rows = Rows(participants={"alice"})
    rows.add_batch(engine_pb2.EngineBatch(events=[converted("alice"), converted("bot-1")]), 7)
    assert rows.activity == [
        {
            "activity_id": "CONVERSION:c1",
            "log_offset": 7,
            "event_index": 0,
            "user_id": "alice",
            "symbol": "TRIO",
            "kind": "CONVERSION",
            "reason": "",
            "quantity": 3,
            "notional_ticks": 0,
            "fee_units": 25_000,
        }
    ]


def test_limit_breaches_are_the_four_limit_reasons():
    tally = Tally(
        rejected={
            "POSITION_LIMIT": 1,
            "OPEN_ORDER_LIMIT": 2,
            "INSUFFICIENT_POSITION": 4,
            "INSUFFICIENT_CASH": 8,
            "USER_DISABLED": 16,
            "SYMBOL_HALTED": 32,
        }
    )
    assert tally.limit_breaches == 15


def test_ranking_is_by_event_pnl_then_user_id():
    samples = {
        "carol": Sample(0, 0, 500, 0, 0.0, ()),
        "alice": Sample(0, 0, -5, 0, 0.0, ()),
        "bob": Sample(0, 0, 500, 0, 0.0, ()),
    }
    assert ranking(["alice", "bob", "carol", "dave"], samples) == ["bob", "carol", "dave", "alice"]


def test_ranking_by_sharpe_is_by_sharpe_then_pnl_then_user_id():
    samples = {
        "carol": Sample(0, 0, 500, 0, 0.5, ()),
        "alice": Sample(0, 0, -5, 0, 1.2, ()),
        "bob": Sample(0, 0, 900, 0, 0.5, ()),
        "erin": Sample(0, 0, 500, 0, 0.5, ()),
    }
    assert ranking(["alice", "bob", "carol", "dave", "erin"], samples, types_pb2.SHARPE) == [
        "alice",
        "bob",
        "carol",
        "erin",
        "dave",
    ]


def two_round_event() -> Event:
    return Event(
        "calm",
        Span(WHOLE_EVENT, (1, 0), None, 1000),
        (Span(1, (2, 0), (5, 0), 2000, 5000), Span(2, (7, 0), None, 7000)),
    )


def test_reports_take_the_round_pnl_from_the_rounds_sample_and_the_total_from_the_event():
    round_one = Sample(5000, 1_012_500, 12_500, 3_000, 0.5, (12_500,))
    round_two = Sample(9000, 990_000, 2_500, 14_000, 0.25, (12_500, -10_000))
    reports = build_reports(
        two_round_event(),
        ["alice", "bob"],
        {
            WHOLE_EVENT: {"alice": Tally(orders=3, trades=2, volume=20, notional_units=2_000_000)},
            1: {"alice": Tally(orders=2, trades=2, volume=20, notional_units=2_000_000)},
        },
        {WHOLE_EVENT: {"alice": round_two}, 1: {"alice": round_one}, 2: {"alice": round_two}},
    )
    alice, bob = reports
    assert (alice.user_id, alice.rank, bob.user_id, bob.rank) == ("alice", 1, "bob", 2)
    first, second = alice.rounds
    assert (first.round, first.pnl, first.cumulative_pnl, first.max_drawdown) == (
        1,
        1.25,
        1.25,
        0.3,
    )
    assert (first.trades, first.volume, first.notional) == (2, 20, 200.0)
    assert first.ended_at.seconds == 0 and first.ended_at.nanos == 5000
    assert (second.round, second.pnl, second.cumulative_pnl, second.sharpe) == (2, -1.0, 0.25, 0.25)
    assert not second.HasField("ended_at") and second.trades == 0
    total = alice.total
    assert (total.round, total.pnl, total.cumulative_pnl, total.orders) == (0, 0.25, 0.25, 3)
    assert total.started_at.nanos == 1000 and not total.HasField("ended_at")
    assert not bob.total.HasField("pnl_sampled_at") and bob.total.pnl == 0


def test_equity_runs_from_ending_equity_minus_pnl_and_the_total_from_the_first_round():
    """Round 2 started afresh (reset): its start is not round 1's end, and the event's start is
    round 1's start, not the last equity minus the event's P&L."""
    round_one = Sample(5000, 1_012_500, 12_500, 0, 0.0, (12_500,))
    round_two = Sample(9000, 990_000, 2_500, 0, 0.0, (12_500, -10_000))
    [alice] = build_reports(
        two_round_event(),
        ["alice"],
        {},
        {WHOLE_EVENT: {"alice": round_two}, 1: {"alice": round_one}, 2: {"alice": round_two}},
    )
    first, second = alice.rounds
    assert (first.starting_equity, first.ending_equity) == (100.0, 101.25)
    assert (second.starting_equity, second.ending_equity) == (100.0, 99.0)
    assert (alice.total.starting_equity, alice.total.ending_equity) == (100.0, 99.0)


def test_one_round_or_one_user_keeps_the_events_ranking():
    samples = {
        WHOLE_EVENT: {
            "alice": Sample(9, 0, 100, 0, 0.0, (100,)),
            "bob": Sample(9, 0, 200, 0, 0.0, (200,)),
        },
        1: {
            "alice": Sample(5, 0, 100, 0, 0.0, (100,)),
            "bob": Sample(5, 0, 200, 0, 0.0, (200,)),
        },
    }
    [alice] = build_reports(two_round_event(), ["alice", "bob"], {}, samples, 1, "alice")
    assert alice.rank == 2
    assert [report.round for report in alice.rounds] == [1]
    assert not alice.HasField("total")


# ---- from the engine's events to the reports, through the database ----


class Log:
    """The pure engine behind a CommandHandler; every command's events become one EngineBatch
    of the log, read into rows as store_svc's consumer does (one poll per batch)."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self.handler = CommandHandler(MatchingEngine(settings=settings))
        self.participants: set[str] = set()
        self.polls: list[Rows] = []
        self.batches: list[engine_pb2.EngineBatch] = []
        self.now = 10 * MINUTE
        self.fills: list[engine_pb2.OrderFilled] = []

    def send(self, after_ns: int = 1_000_000, **command) -> list[engine_pb2.EngineEvent]:
        self.now += after_ns
        message = engine_pb2.EngineCommand(timestamp_ns=self.now, **command)
        events = [event_to_proto(event) for event in self.handler.apply(message)]
        batch = engine_pb2.EngineBatch(command=message, events=events)
        rows = Rows(participants=self.participants)
        rows.add_batch(batch, len(self.polls))
        self.polls.append(rows)
        self.batches.append(batch)
        self.fills += [e.order_filled for e in events if e.WhichOneof("event") == "order_filled"]
        return events

    def account(self, user_id: str, role: int = 0, grant: int = 0, admin: bool = False) -> None:
        grants = [engine_pb2.PositionGrant(symbol="ACME", quantity=grant)] if grant else []
        create = engine_pb2.CreateAccountCommand(
            user_id=user_id, cash_units=100_000 * 10_000, grants=grants, role=role, admin=admin
        )
        self.send(create_account=create)

    def place(
        self, order_id: str, user_id: str, side: int, price_ticks: int, quantity: int, **after
    ) -> None:
        self.send(
            place_order=engine_pb2.PlaceOrderCommand(
                order_id=order_id,
                user_id=user_id,
                symbol="ACME",
                side=side,
                type=types_pb2.LIMIT,
                time_in_force=types_pb2.GFD,
                price_ticks=price_ticks,
                quantity=quantity,
            ),
            **after,
        )

    def fills_of(self, user_id: str) -> list[engine_pb2.OrderFilled]:
        return [fill for fill in self.fills if fill.order.user_id == user_id]


@pytest.fixture
async def database(tmp_path: Path):
    engine = create_db_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_schema(engine)
    yield engine
    await engine.dispose()


def two_rounds() -> tuple[Log, dict[int, list[engine_pb2.OrderFilled]]]:
    """alice buys from bob and from a bot in round 1 (and is refused once for cash), trades with
    bob between the rounds and again in round 2; a minute passes in round 2."""
    log = Log(ExchangeSettings(RULES_VERSION, maker_fee_centi_bps=50, taker_fee_centi_bps=100))
    log.send(
        add_symbol=engine_pb2.AddSymbolCommand(
            symbol="ACME", tick_size="0.01", reference_price_ticks=10_000
        )
    )
    log.account("alice")
    log.account("bob", grant=100)
    log.account("bot-1", role=engine_pb2.ACCOUNT_ROLE_BOT, grant=100)
    log.account("root", admin=True)
    log.send(
        set_scenario=engine_pb2.SetScenarioCommand(
            state=engine_pb2.SCENARIO_STATE_LOADED, name="unit", rounds=2
        )
    )
    by_round: dict[int, list[engine_pb2.OrderFilled]] = {}
    log.send(start_round=engine_pb2.StartRoundCommand(round=1))
    start = len(log.fills)
    log.place("b1", "bob", types_pb2.SELL, 10_050, 10)
    log.place("a1", "alice", types_pb2.BUY, 10_050, 10)
    log.place("a2", "alice", types_pb2.BUY, 10_000, 1_000_000)  # INSUFFICIENT_CASH
    log.place("x1", "bot-1", types_pb2.SELL, 10_100, 5)
    log.place("a3", "alice", types_pb2.BUY, 10_100, 5)
    log.place("r1", "root", types_pb2.BUY, 9_000, 1)
    by_round[1] = log.fills[start:]
    log.send(end_round=engine_pb2.EndRoundCommand(round=1))
    log.place("b2", "bob", types_pb2.SELL, 10_000, 1)
    log.place("a4", "alice", types_pb2.BUY, 10_000, 1)
    log.send(start_round=engine_pb2.StartRoundCommand(round=2))
    start = len(log.fills)
    log.place("a5", "alice", types_pb2.SELL, 9_900, 3)
    log.place("b3", "bob", types_pb2.BUY, 9_900, 3)
    log.place("b4", "bob", types_pb2.BUY, 9_800, 1, after_ns=MINUTE)
    by_round[2] = log.fills[start:]
    log.send(end_round=engine_pb2.EndRoundCommand(round=2))
    return log, by_round


async def test_reports_from_the_engines_log_match_its_fills_and_scores(database):
    log, by_round = two_rounds()
    for rows in log.polls:
        await write_rows(database, rows)
    event, reports, ranked_by = await queries.event_reports(database, "", 0)
    assert ranked_by == types_pb2.PNL
    assert (event.scenario, event.round_numbers()) == ("unit", [1, 2])
    assert [report.user_id for report in reports] == sorted(
        ["alice", "bob"], key=lambda user: -log.handler.engine.scores[user].banked
    )
    scores = log.handler.engine.scores
    for report in reports:
        user = report.user_id
        for number, figures in zip((1, 2), report.rounds, strict=True):
            fills = [fill for fill in by_round[number] if fill.order.user_id == user]
            assert figures.round == number
            assert figures.trades == len(fills)
            assert figures.volume == sum(fill.quantity for fill in fills)
            assert figures.notional == pytest.approx(
                sum(fill.price_ticks * fill.quantity for fill in fills) / 100
            )
            assert figures.fees_paid == pytest.approx(sum(f.fee_units for f in fills) / 10_000)
            assert figures.pnl == scores[user].round_pnls[number - 1] / 10_000
            assert figures.starting_equity == pytest.approx(figures.ending_equity - figures.pnl)
        account = log.handler.engine.accounts[user]
        assert report.rounds[-1].ending_equity == equity(account, log.handler.engine.marks()) / 1e4
        assert report.total.pnl == scores[user].banked / 10_000
        assert report.total.trades == len(log.fills_of(user))
        assert report.total.max_drawdown == scores[user].max_drawdown / 10_000
    alice = next(report for report in reports if report.user_id == "alice")
    first, second = alice.rounds
    assert (first.orders, first.trades, first.volume) == (3, 2, 15)
    assert first.notional == 10 * 100.50 + 5 * 101.00
    assert dict(first.rejected_orders) == {"INSUFFICIENT_CASH": 1} and first.limit_breaches == 1
    assert first.cumulative_pnl == first.pnl
    assert second.cumulative_pnl == pytest.approx(first.pnl + second.pnl)
    assert (alice.total.orders, alice.total.trades) == (5, 4)  # the trade between rounds too
    assert first.starting_equity == 100_000  # cash only: alice starts with no position


async def test_bots_and_admins_have_no_report_and_no_rows(database):
    log, _ = two_rounds()
    activity_users = {row["user_id"] for rows in log.polls for row in rows.activity}
    assert activity_users == {"alice", "bob"}
    for rows in log.polls:
        await write_rows(database, rows)
    for user in ("bot-1", "root", "nobody"):
        assert (await queries.event_reports(database, user, 0))[1] == []
    [bob] = (await queries.event_reports(database, "bob", 2))[1]
    assert [figures.round for figures in bob.rounds] == [2] and not bob.HasField("total")


async def test_rereading_the_log_changes_no_report(database):
    log, _ = two_rounds()
    for rows in log.polls + log.polls:
        await write_rows(database, rows)
    once = await queries.event_reports(database, "", 0)
    for rows in log.polls:
        await write_rows(database, rows)
    assert await queries.event_reports(database, "", 0) == once


async def test_a_log_holding_its_batches_twice_counts_each_fact_once(database):
    log, _ = two_rounds()
    for rows in log.polls:
        await write_rows(database, rows)
    once = await queries.event_reports(database, "", 0)
    again = Rows(participants=log.participants)
    for offset, batch in enumerate(log.batches, start=len(log.batches)):
        again.add_batch(batch, offset)
    await write_rows(database, again)
    assert await queries.event_reports(database, "", 0) == once


async def test_a_round_not_played_is_named_with_the_rounds_that_were(database):
    log, _ = two_rounds()
    for rows in log.polls:
        await write_rows(database, rows)
    with pytest.raises(queries.UnknownRound, match=r"round 3 .* \(rounds: 1, 2\)"):
        await queries.event_reports(database, "alice", 3)


async def test_reports_rank_by_the_last_ranking_the_log_set(database):
    """alice made more, bob more steadily: P&L puts alice first, sharpe bob, and the log's last
    SettingsChanged decides (the store learns the ranking from the log, as the leaderboard)."""
    score = engine_pb2.ScoresSampled(
        scores=[
            engine_pb2.ParticipantScore(user_id="alice", pnl_units=90_000, sharpe=0.2),
            engine_pb2.ParticipantScore(user_id="bob", pnl_units=30_000, sharpe=1.5),
        ]
    )
    events = [
        engine_pb2.EngineEvent(
            exchange_sequence=1, account_created=engine_pb2.AccountCreated(user_id="alice")
        ),
        engine_pb2.EngineEvent(
            exchange_sequence=2, account_created=engine_pb2.AccountCreated(user_id="bob")
        ),
        engine_pb2.EngineEvent(exchange_sequence=3, timestamp_ns=MINUTE, scores_sampled=score),
    ]
    participants: set[str] = set()
    rows = Rows(participants=participants)
    rows.add_batch(engine_pb2.EngineBatch(events=events), 0)
    await write_rows(database, rows)

    async def ranked() -> list[str]:
        return [report.user_id for report in (await queries.event_reports(database, "", 0))[1]]

    assert await ranked() == ["alice", "bob"]
    for offset, metric, expected in (
        (1, types_pb2.SHARPE, ["bob", "alice"]),
        (2, types_pb2.PNL, ["alice", "bob"]),
    ):
        rows = Rows(participants=participants)
        changed = engine_pb2.SettingsChanged(
            settings=engine_pb2.ExchangeSettings(rules_version=RULES_VERSION, ranking=metric)
        )
        event = engine_pb2.EngineEvent(exchange_sequence=3 + offset, settings_changed=changed)
        rows.add_batch(engine_pb2.EngineBatch(events=[event]), offset)
        assert rows.rankings == [
            {
                "exchange_sequence": 3 + offset,
                "log_offset": offset,
                "event_index": 0,
                "ranking": types_pb2.RankingMetric.Name(metric),
            }
        ]
        await write_rows(database, rows)
        assert await ranked() == expected
