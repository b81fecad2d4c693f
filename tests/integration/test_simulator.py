"""The market simulator (data_svc) on the real stack: the default scenario's bots make a market
in every symbol through the public API, news moves fair values and reaches participants without
its shock, scenario files are refused with the field and the line, a short scenario plays its
rounds on time, and a simulator killed with -9 comes back where the scenario's clock stood.

One stack for the module, started with MOCKEX_SCENARIO=default like `make run`, reading its
scenarios from a copy of scenarios/ with two more files of the test's own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from websockets.asyncio.client import connect

from exchange.internal.v1 import simulator_pb2, simulator_pb2_grpc
from exchange.v1 import admin_pb2
from mockex.admin.cli import main as admin_cli
from mockex.processes import REPO_ROOT
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.test_rest_edge import Edge, assert_error

pytestmark = pytest.mark.integration

DEFAULT_SYMBOLS = {"ACME", "GLOBX", "INITECH", "UMBRA"}
QUICK = """\
name: quick
description: Two short rounds for the tests.
instruments:
  - {symbol: QACME, tick_size: 0.01, start_price: 40, process: {kind: gbm, volatility: 0.02}}
schedule:
  rounds:
    - {name: First, length_seconds: 6, break_seconds: 3}
    - {name: Second, length_seconds: 6}
  reset_between_rounds: true
bots:
  - {kind: market_maker, rate: 2, position: 500}
  - {kind: noise, rate: 2, position: 500, params: {market_order_probability: 0.8}}
news:
  - {time_seconds: 2, headline: QACME beats the forecast, symbols: [QACME], price_change: 0.01}
"""
BROKEN = """\
name: broken
instruments:
  - {symbol: BRK, tick_size: 0.01, start_price: 10, process: {kind: gbm, volatility: 0.02}}
schedule:
  rounds: [{length_seconds: 60}]
bots:
  - kind: market_maker
    rate: -2
"""


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    scenarios = tmp_path_factory.mktemp("scenarios")
    shutil.copytree(REPO_ROOT / "scenarios", scenarios, dirs_exist_ok=True)
    (scenarios / "quick.yaml").write_text(QUICK)
    (scenarios / "broken.yaml").write_text(BROKEN)
    env = {"MOCKEX_SCENARIO": "default", "MOCKEX_SCENARIOS_DIR": str(scenarios)}
    with running_stack(kafka_bootstrap, tmp_path_factory.mktemp("stack"), env) as stack:
        yield stack


@pytest.fixture(scope="module")
def rest(stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{stack.ports.edge}")


def simulator_status(stack: ExchangeStack) -> admin_pb2.GetSimulatorStatusResponse:
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports.data}") as channel:
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        request = simulator_pb2.GetSimulatorStatusRequest()
        return stub.GetSimulatorStatus(request, timeout=5).status


def until(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def traded_symbols(rest: Edge) -> set[str]:
    return {
        symbol
        for symbol in DEFAULT_SYMBOLS
        if rest.ok("GET", f"/market/trades/{symbol}?limit=1").get("trades")
    }


def test_the_default_scenario_trades_every_symbol(stack: ExchangeStack, rest: Edge) -> None:
    listed = {entry["symbol"] for entry in rest.ok("GET", "/market/symbols")["symbols"]}
    assert listed == DEFAULT_SYMBOLS
    until(lambda: traded_symbols(rest) == DEFAULT_SYMBOLS, 30, "a trade in every symbol")
    for symbol in DEFAULT_SYMBOLS:
        quote = rest.ok("GET", f"/market/quote/{symbol}")
        assert quote.get("bid") and quote.get("ask") and quote["bid"] < quote["ask"], quote
    status = simulator_status(stack)
    assert (status.scenario, status.state) == ("default", "RUNNING")
    assert sum(kind.bots for kind in status.kinds) == 40
    assert {kind.kind for kind in status.kinds} >= {"market_maker", "noise", "value"}
    assert set(status.fair_values) == DEFAULT_SYMBOLS
    shown = rest.ok("GET", "/admin/simulator", key=ADMIN_KEY)
    assert (shown["scenario"], shown["state"]) == ("default", "RUNNING")
    assert set(shown["fairValues"]) == DEFAULT_SYMBOLS
    assert sum(kind["bots"] for kind in shown["kinds"]) == 40
    participant_key = rest.participant()
    assert_error(rest.call("GET", "/admin/simulator", key=participant_key), 403, 7, "admin")
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{stack.ports.gateway}"
    assert admin_cli(["--target", target, "--admin-key", ADMIN_KEY, "simulator"], out, err) == 0
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("default (seed ") and " RUNNING, scenario clock " in printed[0]
    assert printed[1].split() == ["bots", "count", "orders", "cancels", "orders/s"]
    [fair] = [line for line in printed if line.startswith("fair values: ")]
    assert [item.split()[0] for item in fair.removeprefix("fair values: ").split(", ")] == sorted(
        DEFAULT_SYMBOLS
    )
    kinds = {line.split()[0] for line in printed[2 : printed.index(fair)]}
    assert kinds >= {"market_maker", "noise", "value"}
    schedule = rest.ok("GET", "/schedule")
    assert schedule["scenario"] == "default" and schedule["round"] == 1
    assert schedule["marketOpen"] is True


async def test_news_moves_the_fair_value_and_participants_see_only_the_headline(
    stack: ExchangeStack, rest: Edge
) -> None:
    before = simulator_status(stack).fair_values["UMBRA"]
    news_id = "test-" + uuid.uuid4().hex[:8]
    url = f"ws://127.0.0.1:{stack.ports.edge}/ws/exchange_events"
    async with connect(url) as websocket:
        news = {
            "newsId": news_id,
            "headline": "UMBRA wins a large contract",
            "symbols": ["UMBRA"],
            "priceChange": 0.2,
        }
        rest.ok("POST", "/admin/news", news, ADMIN_KEY)
        while True:
            message = json.loads(await asyncio.wait_for(websocket.recv(), 10))
            if message.get("kind") == "NEWS":
                break
    assert message["symbol"] == "UMBRA" and "UMBRA wins a large contract" in message["message"]
    assert "0.2" not in json.dumps(message) and "shock" not in json.dumps(message)
    [listed] = [item for item in rest.ok("GET", "/news")["news"] if item["newsId"] == news_id]
    assert set(listed) == {"newsId", "headline", "symbols", "timestamp"}
    after = until(
        lambda: (value := simulator_status(stack).fair_values["UMBRA"]) > before * 1.1 and value,
        10,
        "UMBRA's fair value up by the shock",
    )
    assert after < before * 1.3
    # The market follows: the bots' quotes move up toward the new fair value.
    until(
        lambda: float(rest.ok("GET", "/market/quote/UMBRA").get("bid", 0)) > before * 1.05,
        20,
        "UMBRA's bid up after the news",
    )
    assert_error(rest.call("POST", "/admin/news", news, ADMIN_KEY), 409, 6, news_id)


def test_a_participant_trading_with_the_bots_finds_its_own_pnl_on_the_leaderboard(
    rest: Edge,
) -> None:
    user_id = "sim" + uuid.uuid4().hex[:8]
    created = rest.ok("POST", "/admin/users", {"userId": user_id, "cash": 100_000}, ADMIN_KEY)
    key = created["apiKey"]
    cash_change, position = 0.0, 0
    for side in ("BUY", "SELL", "BUY", "BUY"):
        quote = rest.ok("GET", "/market/quote/ACME")
        order = {
            "symbol": "ACME",
            "side": side,
            "type": "LIMIT",
            "price": quote["ask"] if side == "BUY" else quote["bid"],
            "quantity": 5,
            "timeInForce": "IOC",
        }
        placed = rest.ok("POST", "/order/place", order, key)
        sign = 1 if side == "BUY" else -1
        for fill in placed.get("fills", []):
            position += sign * fill["quantity"]
            cash_change -= sign * fill["price"] * fill["quantity"] + fill.get("fee", 0.0)
    assert position, "the bots' quotes filled nothing"
    # Paused, every symbol is halted: the book and the mark hold still while the participant's
    # own figure and the leaderboard's are compared.
    rest.ok("POST", "/admin/scenario", {"state": "PAUSED"}, ADMIN_KEY)
    try:
        time.sleep(1.0)
        mark = rest.ok("GET", "/market/quote/ACME")["mark"]
        own_pnl = cash_change + position * mark
        entries = rest.ok("GET", "/leaderboard")["entries"]
        [entry] = [e for e in entries if e["userId"] == user_id]
        assert entry.get("pnl", 0.0) == pytest.approx(own_pnl, abs=0.005), (entry, own_pnl)
        assert entry["equity"] == pytest.approx(100_000 + own_pnl, abs=0.005)
        assert not [e for e in entries if e["userId"].startswith(("market_maker-", "noise-"))]
    finally:
        rest.ok("POST", "/admin/scenario", {"state": "RUNNING"}, ADMIN_KEY)


def test_scenario_files_are_refused_with_the_field_and_the_line(rest: Edge) -> None:
    broken = rest.call("POST", "/admin/scenario/load", {"name": "broken"}, ADMIN_KEY)
    assert_error(broken, 400, 3, "broken.yaml")
    assert "line 8" in broken.body["message"] and "rate" in broken.body["message"], broken
    assert_error(
        rest.call("POST", "/admin/scenario/load", {"name": "nope"}, ADMIN_KEY), 404, 5, "quick"
    )
    answer = rest.ok("GET", "/admin/scenarios", key=ADMIN_KEY)
    listed = {entry["name"]: entry for entry in answer["scenarios"]}
    assert {"default", "quick", "etf-arbitrage", "broken"} <= set(listed)
    assert listed["broken"]["description"].startswith("cannot be loaded: ")
    assert listed["quick"]["symbols"] == ["QACME"] and listed["quick"]["rounds"] == 2
    assert rest.call("GET", "/admin/scenarios").status == 401
    # The refused loads changed nothing: the default scenario plays on.
    assert rest.ok("GET", "/schedule")["scenario"] == "default"


def test_a_simulator_killed_with_9_goes_on_from_the_scenario_clock(
    stack: ExchangeStack, rest: Edge
) -> None:
    before = simulator_status(stack)
    news_before = len(rest.ok("GET", "/news")["news"])
    stack.processes["data"].kill()
    stack.start_service("data")
    after = simulator_status(stack)
    assert after.scenario == "default" and after.state == "RUNNING"
    assert after.scenario_seconds >= before.scenario_seconds
    last_trade = {
        s: rest.ok("GET", f"/market/trades/{s}?limit=1")["trades"][0] for s in DEFAULT_SYMBOLS
    }
    until(
        lambda: all(
            rest.ok("GET", f"/market/trades/{s}?limit=1")["trades"][0] != last_trade[s]
            for s in ("ACME", "GLOBX")
        ),
        30,
        "new trades after the restart",
    )
    schedule = rest.ok("GET", "/schedule")
    assert schedule["round"] == 1 and schedule["scenario"] == "default"
    assert len(rest.ok("GET", "/news")["news"]) == news_before  # nothing published again


def test_a_bulk_created_team_trades_with_the_bots_and_the_kill_switch_stops_it(
    stack: ExchangeStack, rest: Edge, tmp_path: Path
) -> None:
    team = "team-" + uuid.uuid4().hex[:6]
    (tmp_path / "teams.csv").write_text(f"user_id\n{team}\n")
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{stack.ports.gateway}"
    arguments = ["--target", target, "--admin-key", ADMIN_KEY, "create-teams"]
    arguments += [str(tmp_path / "teams.csv"), "--keys-file", str(tmp_path / "keys.csv")]
    assert admin_cli(arguments, out, err) == 0, err.getvalue()
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    key = row["api_key"]
    # Created without cash, the team starts on the scenario's participant terms.
    account = rest.ok("GET", "/account", key=key)
    assert account["cash"] == 100_000
    assert {p["symbol"]: p["quantity"] for p in account["positions"]}["GLOBX"] == 50
    quote = rest.ok("GET", "/market/quote/GLOBX")
    order = {"symbol": "GLOBX", "side": "SELL", "type": "LIMIT", "price": quote["bid"]}
    sold = rest.ok("POST", "/order/place", {**order, "quantity": 3, "timeInForce": "IOC"}, key)
    assert sold.get("filledQuantity"), sold
    resting = [
        rest.ok(
            "POST", "/order/place", {**order, "price": quote["ask"] + 5 + n, "quantity": 1}, key
        )
        for n in range(3)
    ]
    assert all(placed["status"] == "NEW" for placed in resting)
    out, err = io.StringIO(), io.StringIO()
    assert admin_cli(["--target", target, "--admin-key", ADMIN_KEY, "disable", team], out, err) == 0
    assert "3 open orders cancelled" in out.getvalue()
    for placed in resting:
        found = rest.ok("GET", f"/order/status/{placed['orderId']}", key=key)
        assert found["status"] == "CANCELLED", found


def test_an_engine_killed_with_9_keeps_the_scenarios_rules_and_the_bots_trade_on(
    stack: ExchangeStack, rest: Edge
) -> None:
    rules = rest.ok("GET", "/admin/rules", key=ADMIN_KEY)
    assert (rules["positionLimit"], rules["messageRatePerSecond"]) == ("10000", "20"), rules
    last = rest.ok("GET", "/market/trades/ACME?limit=1")["trades"][0]
    stack.processes["engine"].kill()
    stack.start_service("engine")
    # A restart logs only what its environment changes: the scenario's rules stand.
    assert rest.ok("GET", "/admin/rules", key=ADMIN_KEY) == rules
    until(
        lambda: rest.ok("GET", "/market/trades/ACME?limit=1")["trades"][0] != last,
        30,
        "ACME trades after the engine's restart",
    )


def test_a_short_scenario_plays_its_rounds_on_time(stack: ExchangeStack, rest: Edge) -> None:
    loaded = rest.ok("POST", "/admin/scenario/load", {"name": "quick", "seed": 3}, ADMIN_KEY)
    assert loaded["name"] == "quick" and loaded["symbols"] == ["QACME"] and loaded["rounds"] == 2
    started = time.monotonic()
    until(lambda: rest.ok("GET", "/schedule").get("round") == 1, 10, "round 1")
    until(lambda: rest.ok("GET", "/market/trades/QACME?limit=1").get("trades"), 10, "QACME trades")
    until(lambda: not rest.ok("GET", "/schedule").get("marketOpen"), 15, "round 1 over")
    ended = time.monotonic() - started
    assert 4 <= ended <= 12, ended
    schedule = rest.ok("GET", "/schedule")
    assert schedule["round"] == 1 and "nextRoundStartsAt" in schedule
    until(lambda: rest.ok("GET", "/schedule").get("round") == 2, 10, "round 2")
    headlines = [item["headline"] for item in rest.ok("GET", "/news")["news"]]
    assert headlines.count("QACME beats the forecast") == 1
    until(lambda: rest.ok("GET", "/schedule").get("state") == "FINISHED", 15, "the end")
    assert not rest.ok("GET", "/schedule").get("marketOpen")
