"""End-of-round reports and the organizer's command line on the real stack.

Two rounds (the second restarted with resets) with trades, fees and rejected orders: GET /report
and GET /admin/results agree with what the test computes from its own fills. The command line
(`python -m mockex.admin`, in-process and once as a process) creates teams from a CSV, disables a
user with open orders, exports the results, lists the shipped scenarios from the stack's
simulator (data_svc, running with none loaded) and prints a refusal as one line. The rules'
ranking orders the leaderboard and the results alike.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from exchange.v1 import admin_pb2, competition_pb2, types_pb2
from mockex.admin.cli import main
from mockex.processes import REPO_ROOT
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.exchange_client import Exchange, Participant
from tests.integration.test_rest_edge import Edge, assert_error

pytestmark = pytest.mark.integration

MAKER_FEE_BPS, TAKER_FEE_BPS = 1.0, 2.0
POSITION_LIMIT = 200
CASH = 1_000_000.0


@pytest.fixture
async def exchange(exchange_stack: ExchangeStack):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}")
    yield Exchange(channel, ADMIN_KEY)
    await channel.close()


@pytest.fixture(scope="module")
def rest(exchange_stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")


@dataclass
class Cli:
    """`python -m mockex.admin` against the stack's gateway, run in-process."""

    target: str

    def __call__(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--target", self.target, "--admin-key", ADMIN_KEY, *args], out, err)
        return code, out.getvalue(), err.getvalue()

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, f"{args}: exit {code}\n{out}{err}"
        return out


@pytest.fixture(scope="module")
def cli(exchange_stack: ExchangeStack) -> Cli:
    return Cli(f"127.0.0.1:{exchange_stack.ports.gateway}")


@dataclass
class Ledger:
    """The test's own accounting of one participant, from the fills it was answered."""

    cash: float
    position: int = 0
    trades: int = 0
    volume: int = 0
    notional: float = 0.0
    fees: float = 0.0
    orders: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def record(self, order: types_pb2.Order) -> None:
        self.orders += 1
        if order.status == types_pb2.REJECTED:
            reason = order.reject_reason
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        sign = 1 if order.side == types_pb2.BUY else -1
        for fill in order.fills:
            self.position += sign * fill.quantity
            self.cash -= sign * fill.price * fill.quantity + fill.fee
            self.trades += 1
            self.volume += fill.quantity
            self.notional += fill.price * fill.quantity
            self.fees += fill.fee

    def equity(self, mark: float) -> float:
        return self.cash + self.position * mark


async def trade(
    seller: Participant,
    buyer: Participant,
    symbol: str,
    price: float,
    quantity: int,
    ledgers: dict[str, Ledger],
    buyer_rests: bool = False,
) -> None:
    """A resting order and the one that takes it, fully filled, each recorded in its ledger."""
    maker, taker = (buyer, seller) if buyer_rests else (seller, buyer)
    maker_side, taker_side = ("BUY", "SELL") if buyer_rests else ("SELL", "BUY")
    resting = await maker.place(symbol, maker_side, quantity, price)
    taking = await taker.place(symbol, taker_side, quantity, price, tif="IOC")
    assert taking.status == types_pb2.FILLED, taking
    ledgers[taker.user_id].record(taking)
    ledgers[maker.user_id].record(await maker.get(resting.order_id))


async def reject(participant: Participant, ledger: Ledger, *order) -> str:
    placed = await participant.place(*order)
    assert placed.status == types_pb2.REJECTED, placed
    ledger.record(placed)
    return placed.reject_reason


def assert_figures(
    figures: dict, ledger: Ledger, start: float, end: float, cumulative: float
) -> None:
    """A RoundReport in its REST form against the ledger of the same stretch, whose equity went
    from `start` to `end`."""
    assert figures["orders"] == ledger.orders
    assert figures["trades"] == ledger.trades
    assert figures["volume"] == ledger.volume
    assert figures["notional"] == pytest.approx(ledger.notional, abs=1e-6)
    assert figures["feesPaid"] == pytest.approx(ledger.fees, abs=1e-6)
    assert figures["rejectedOrders"] == ledger.rejected
    assert figures["limitBreaches"] == sum(ledger.rejected.values())
    assert figures["conversions"] == 0
    assert figures["startingEquity"] == pytest.approx(start, abs=1e-6)
    assert figures["endingEquity"] == pytest.approx(end, abs=1e-6)
    assert figures["pnl"] == pytest.approx(end - start, abs=1e-6)
    assert figures["cumulativePnl"] == pytest.approx(cumulative, abs=1e-6)


async def test_round_reports_match_the_participants_own_fills(
    exchange: Exchange, rest: Edge, cli: Cli
) -> None:
    cli.ok("rules", "--maker-fee-bps", str(MAKER_FEE_BPS), "--taker-fee-bps", str(TAKER_FEE_BPS))
    cli.ok("rules", "--position-limit", str(POSITION_LIMIT))
    await exchange.admin.SetScenario(
        admin_pb2.SetScenarioRequest(state=competition_pb2.LOADED, name="reports-test", seed=1),
        metadata=exchange.admin_metadata,
        timeout=15,
    )
    symbol = await exchange.add_symbol(reference_price=100.0)
    alice = await exchange.participant(cash=CASH)
    bob = await exchange.participant(cash=CASH, positions={symbol: 100})
    bot_created = await exchange.admin.CreateUser(
        admin_pb2.CreateUserRequest(
            user_id="bot" + uuid.uuid4().hex[:8],
            cash=CASH,
            positions={symbol: 10},
            role=admin_pb2.BOT,
        ),
        metadata=exchange.admin_metadata,
        timeout=15,
    )
    bot = Participant(exchange.channel, bot_created.user_id, bot_created.api_key)

    def ledgers_at_start() -> dict[str, Ledger]:
        return {
            alice.user_id: Ledger(CASH),
            bob.user_id: Ledger(CASH, position=100),
            bot.user_id: Ledger(CASH),
        }

    # Round 1: alice buys 10 and 5 from bob and 1 from the bot; refused for cash and for the
    # position limit. Marks: the reference price at the start, the last trade at the end.
    cli.ok("round", "start", "1", "--duration", "600")
    one = ledgers_at_start()
    start_one = {user: ledger.equity(100.0) for user, ledger in one.items()}
    await trade(bob, alice, symbol, 100.50, 10, one)
    await trade(bob, alice, symbol, 101.00, 5, one)
    assert await reject(alice, one[alice.user_id], symbol, "BUY", 150, 7_000.0) == (
        "INSUFFICIENT_CASH"
    )
    assert await reject(alice, one[alice.user_id], symbol, "BUY", POSITION_LIMIT, 90.0) == (
        "POSITION_LIMIT"
    )
    await trade(bot, alice, symbol, 101.00, 1, one)
    cli.ok("round", "end", "1")
    end_one = {user: ledger.equity(101.00) for user, ledger in one.items()}

    # Round 2, restarted with resets after a first trade: only what follows the restart counts.
    cli.ok("round", "start", "2", "--duration", "600")
    await trade(alice, bob, symbol, 99.00, 4, ledgers_at_start())
    cli.ok("round", "reset", "2", "--duration", "600")
    two = ledgers_at_start()
    start_two = {user: ledger.equity(99.00) for user, ledger in two.items()}
    await trade(bob, alice, symbol, 99.50, 3, two, buyer_rests=True)
    assert await reject(alice, two[alice.user_id], symbol, "SELL", 4, 99.0) == (
        "INSUFFICIENT_POSITION"
    )
    cli.ok("round", "end", "2")
    end_two = {user: ledger.equity(99.50) for user, ledger in two.items()}

    def pnl(user: str) -> tuple[float, float]:
        return end_one[user] - start_one[user], end_two[user] - start_two[user]

    report = rest.ok("GET", "/report", key=alice.api_key)
    assert report["userId"] == alice.user_id
    first, second = report["rounds"]
    assert (first["round"], second["round"]) == (1, 2)
    a = alice.user_id
    assert_figures(first, one[a], start_one[a], end_one[a], pnl(a)[0])
    assert_figures(second, two[a], start_two[a], end_two[a], sum(pnl(a)))
    assert first["rejectedOrders"] == {"INSUFFICIENT_CASH": 1, "POSITION_LIMIT": 1}
    assert first["endedAt"] <= second["startedAt"] and "endedAt" in second
    total = report["total"]
    assert total["pnl"] == pytest.approx(sum(pnl(a)), abs=1e-6)
    assert total["startingEquity"] == first["startingEquity"]
    assert total["endingEquity"] == second["endingEquity"]
    # The total counts the whole event: the trade of round 2's first start too.
    assert total["trades"] == first["trades"] + second["trades"] + 1
    board = {e["userId"]: e for e in rest.ok("GET", "/leaderboard")["entries"]}
    assert total["pnl"] == pytest.approx(board[a]["pnl"], abs=1e-6)
    assert total["maxDrawdown"] == pytest.approx(board[a]["maxDrawdown"], abs=1e-6)
    assert [first["pnl"], second["pnl"]] == pytest.approx(board[a]["roundPnl"], abs=1e-6)

    only_first = rest.ok("GET", "/report?round=1", key=alice.api_key)
    assert only_first["rounds"] == [first] and "total" not in only_first
    assert_error(rest.call("GET", "/report?round=7", key=alice.api_key), 404, 5, "rounds: 1, 2")
    assert_error(rest.call("GET", "/report", key=bot.api_key), 404, 5, "participants")
    assert_error(rest.call("GET", "/report"), 401, 16)

    results = rest.ok("GET", "/admin/results", key=ADMIN_KEY)
    assert (results["scenario"], results["rounds"]) == ("reports-test", [1, 2])
    by_user = {entry["userId"]: entry for entry in results["reports"]}
    assert bot.user_id not in by_user and "admin" not in by_user
    assert by_user[a] == report
    b = bob.user_id
    bob_first, bob_second = by_user[b]["rounds"]
    assert_figures(bob_first, one[b], start_one[b], end_one[b], pnl(b)[0])
    assert_figures(bob_second, two[b], start_two[b], end_two[b], sum(pnl(b)))
    ranks = [entry["rank"] for entry in results["reports"]]
    assert ranks == list(range(1, len(ranks) + 1))
    pnls = [entry["total"]["pnl"] for entry in results["reports"]]
    assert pnls == sorted(pnls, reverse=True)
    assert_error(rest.call("GET", "/admin/results", key=alice.api_key), 403, 7)


def by_sharpe(entries: list[dict], figures: str = "") -> list[dict]:
    """Entries (or reports, with their `total` figures) ranked by sharpe, P&L, user id."""

    def key(entry: dict) -> tuple[float, float, str]:
        scores = entry[figures] if figures else entry
        return (-scores["sharpe"], -scores["pnl"], entry["userId"])

    return sorted(entries, key=key)


async def test_the_rules_ranking_orders_the_leaderboard_and_the_results(
    exchange: Exchange, rest: Edge, cli: Cli
) -> None:
    """Ranked by sharpe (set on the command line), the leaderboard says so and ranks by sharpe,
    then P&L, then user id, and so do the results; back to P&L afterwards. (Sharpe needs
    minutes of samples, so here it mostly ties and P&L decides; test_ranking.py and
    test_store_reports.py have sharpe decide.)"""
    symbol = await exchange.add_symbol(reference_price=100.0)
    buyer = await exchange.participant(cash=CASH)
    seller = await exchange.participant(cash=CASH, positions={symbol: 10})
    await seller.place(symbol, "SELL", 10, 90.0)
    assert (await buyer.place(symbol, "BUY", 10, 90.0, tif="IOC")).status == types_pb2.FILLED
    try:
        assert "ranking: sharpe" in cli.ok("rules", "--ranking", "sharpe").splitlines()
        assert rest.ok("GET", "/admin/rules", key=ADMIN_KEY)["ranking"] == "SHARPE"
        board = rest.ok("GET", "/leaderboard")
        assert board["rankedBy"] == "SHARPE"
        entries = board["entries"]
        assert {buyer.user_id, seller.user_id} <= {entry["userId"] for entry in entries}
        assert entries == by_sharpe(entries)
        assert [entry["rank"] for entry in entries] == list(range(1, len(entries) + 1))
        results = rest.ok("GET", "/admin/results", key=ADMIN_KEY)
        assert results["rankedBy"] == "SHARPE"
        reports = results["reports"]
        assert reports == by_sharpe(reports, "total")
        refused = rest.call(
            "POST", "/admin/rules", {"ranking": "RANKING_METRIC_UNSPECIFIED"}, ADMIN_KEY
        )
        assert_error(refused, 400, 3, "ranking must be one of PNL, SHARPE")
    finally:
        rules = rest.ok("POST", "/admin/rules", {"ranking": "PNL"}, ADMIN_KEY)
    assert rules["ranking"] == "PNL"
    board = rest.ok("GET", "/leaderboard")
    assert board["rankedBy"] == "PNL"
    assert rest.ok("GET", "/admin/results", key=ADMIN_KEY)["rankedBy"] == "PNL"
    pnls = [entry["pnl"] for entry in board["entries"]]
    assert pnls == sorted(pnls, reverse=True)


async def test_create_teams_from_a_csv_and_a_team_trades(
    exchange: Exchange, cli: Cli, tmp_path: Path
) -> None:
    taken = await exchange.participant()
    names = [f"team-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    teams_csv = tmp_path / "teams.csv"
    teams_csv.write_text(f"user_id,cash\n{names[0]},50000\n{taken.user_id},1\n\n{names[1]},\n")
    keys_file = tmp_path / "keys.csv"

    umask = os.umask(0)  # the keys file is 0600 whatever the umask
    try:
        code, out, err = cli("create-teams", str(teams_csv), "--keys-file", str(keys_file))
    finally:
        os.umask(umask)
    assert code == 0, err
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    printed = list(csv.DictReader(io.StringIO(out)))
    saved = list(csv.DictReader(keys_file.open()))
    assert printed == saved and [row["user_id"] for row in saved] == names
    assert all(row["api_key"].startswith("mx_") for row in saved)
    assert f"[2/3] {taken.user_id}: exists already, skipped" in err
    assert "2 created, 1 existed already, 0 refused" in err

    again, _, err = cli("create-teams", str(teams_csv), "--keys-file", str(keys_file))
    assert again == 1 and "exists already; keys are never overwritten" in err

    symbol = await exchange.add_symbol()
    team = Participant(exchange.channel, saved[0]["user_id"], saved[0]["api_key"])
    seller = await exchange.participant(positions={symbol: 10})
    await seller.place(symbol, "SELL", 10, 100.0)
    bought = await team.place(symbol, "BUY", 10, 100.0)
    assert bought.status == types_pb2.FILLED
    assert (await team.account()).cash == pytest.approx(50_000 - 1000 - bought.fills[0].fee)
    users = cli.ok("users")
    rows = [line.split()[:3] for line in users.splitlines()]
    assert [names[0], "PARTICIPANT", "active"] in rows


async def test_disable_cancels_every_open_order_and_enable_lets_trade_again(
    exchange: Exchange, cli: Cli
) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant(positions={symbol: 30})
    resting = [await trader.place(symbol, "SELL", 5, 101.0 + n) for n in range(3)]
    resting.append(await trader.place(symbol, "BUY", 5, 90.0))

    out = cli.ok("disable", trader.user_id)
    assert f"{trader.user_id} disabled: 4 open orders cancelled" in out
    for order in resting:
        cancelled = await trader.get(order.order_id)
        assert (cancelled.status, cancelled.status_reason) == (
            types_pb2.CANCELLED,
            "CANCELLED_BY_ADMIN",
        )
    refused = await trader.place(symbol, "BUY", 1, 90.0)
    assert (refused.status, refused.reject_reason) == (types_pb2.REJECTED, "USER_DISABLED")
    rows = [line.split()[:3] for line in cli.ok("users").splitlines()]
    assert [trader.user_id, "PARTICIPANT", "disabled"] in rows

    cli.ok("enable", trader.user_id)
    assert (await trader.place(symbol, "BUY", 1, 90.0)).status == types_pb2.NEW


async def test_export_writes_the_results_files(
    exchange: Exchange, cli: Cli, tmp_path: Path
) -> None:
    trader = await exchange.participant()
    out = cli.ok("export", str(tmp_path / "results"))
    directory = tmp_path / "results"
    results = json.loads((directory / "results.json").read_text())
    users = [report["userId"] for report in results["reports"]]
    assert trader.user_id in users and "admin" not in users
    lines = list(csv.DictReader((directory / "results.csv").open()))
    rounds = [str(number) for number in results["rounds"]]
    assert len(lines) == len(users) * (len(rounds) + 1)
    assert {line["round"] for line in lines} == {*rounds, "total"}
    for user in users:
        own = json.loads((directory / "reports" / f"{user}.json").read_text())
        assert own == next(report for report in results["reports"] if report["userId"] == user)
        own_lines = list(csv.DictReader((directory / "reports" / f"{user}.csv").open()))
        assert [line["round"] for line in own_lines] == [*rounds, "total"]
        assert str(directory / "reports" / f"{user}.csv") in out
    ranked = [line for line in lines if line["round"] == "total"]
    assert [int(line["rank"]) for line in ranked] == list(range(1, len(users) + 1))


def test_scenarios_lists_the_shipped_ones_from_the_simulator(cli: Cli) -> None:
    shipped = sorted(path.stem for path in (REPO_ROOT / "scenarios").glob("*.yaml"))
    lines = cli.ok("scenarios").splitlines()
    assert lines[0].split() == ["name", "rounds", "length", "symbols", "description"]
    assert sorted(line.split()[0] for line in lines[1:]) == shipped


def test_command_line_errors_are_one_line_and_exit_1(
    exchange_stack: ExchangeStack, cli: Cli
) -> None:
    """As a process: a scenario that does not exist (the simulator names those that do), and
    in-process an unknown user and a wrong key."""
    command = [
        sys.executable,
        "-m",
        "mockex.admin",
        "--target",
        f"127.0.0.1:{exchange_stack.ports.gateway}",
        "load-scenario",
        "no-such-scenario",
    ]
    env = {**os.environ, "MOCKEX_ADMIN_KEY": ADMIN_KEY}
    done = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: NOT_FOUND: there is no scenario 'no-such-scenario'")
    assert "default" in line

    code, out, err = cli("rotate-key", "nobody-" + uuid.uuid4().hex[:6])
    assert code == 1 and out == ""
    assert err.startswith("error: NOT_FOUND: ") and len(err.splitlines()) == 1

    code, _, err = cli("--admin-key", "wrong", "users")
    assert code == 1 and err.startswith("error: UNAUTHENTICATED: ")
