"""The benchmark tools: flow files, the generator, the baseline agreeing with the engine, output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run_all
from bench.baseline_matcher import BaselineMatcher
from bench.engine_bench import BenchResult, run_baseline, run_engine
from bench.engine_bench import main as engine_bench_main
from bench.flow import (
    CANCEL,
    FlowFormatError,
    Message,
    cancel,
    new_order,
    parse_rows,
    read_flow,
    write_flow,
)
from bench.generate_flow import FlowMix, generate
from bench.run_all import END_MARKER, START_MARKER, write_section
from engine_svc.engine import MatchingEngine
from engine_svc.events import TradeExecuted
from engine_svc.orders import OrderType, Side, TimeInForce

REPO_ROOT = Path(__file__).resolve().parents[2]
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, FOK = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.FOK
RESULT_LINE = re.compile(
    r"^messages=\d+ trades=\d+ traded_quantity=\d+ best_bid=(-|\d+) best_ask=(-|\d+) "
    r"msgs_per_s=\d+$"
)

MIXES = {
    "default": FlowMix(),
    "cancel_heavy": FlowMix(cancel_share=0.35, finished_cancel_share=0.10),
    "aggressive": FlowMix(
        limit_gfd=0.5,
        limit_ioc=0.2,
        limit_fok=0.1,
        market_ioc=0.12,
        market_fok=0.08,
        crossing_share=0.3,
    ),
    "deep_passive": FlowMix(
        cancel_share=0.25,
        passive_mean_ticks=12.0,
        limit_gfd=0.9,
        limit_ioc=0.04,
        limit_fok=0.03,
        market_ioc=0.02,
        market_fok=0.01,
        mid_step_chance=0.2,
    ),
}


def outcome(result) -> tuple:
    return result.messages, result.trades, result.traded_quantity, result.best_bid, result.best_ask


@pytest.mark.parametrize(
    ("seed", "mix_name"),
    [(1, "default"), (7, "cancel_heavy"), (42, "aggressive"), (2024, "deep_passive")],
)
def test_engine_and_baseline_agree_on_generated_flow(seed: int, mix_name: str) -> None:
    messages = list(generate(20_000, seed, MIXES[mix_name]))
    engine = run_engine(messages)
    baseline = run_baseline(messages)
    assert engine.trades > 1_000
    assert outcome(engine) == outcome(baseline)


def test_engine_trade_count_matches_its_own_statistics() -> None:
    """The bench counts TradeExecuted events; the engine's own counters must agree."""
    messages = list(generate(5_000, 3))
    engine = MatchingEngine()
    engine.add_symbol("BENCH", 0)
    trades = traded_quantity = 0
    for now, (op, order_id, side, order_type, tif, price, quantity) in enumerate(messages, 1):
        if op == CANCEL:
            events = engine.cancel_order(order_id, "", now)
        else:
            events = engine.place_order(
                order_id, "", "BENCH", side, order_type, tif, price, quantity, now
            )
        for event in events:
            if isinstance(event, TradeExecuted):
                trades += 1
                traded_quantity += event.quantity
    state = engine.symbols["BENCH"]
    assert (trades, traded_quantity) == (state.trade_count, state.volume)
    assert run_engine(messages).trades == trades


def test_generated_flow_has_the_intended_mix() -> None:
    messages = list(generate(20_000, 11))
    cancels = [message for message in messages if message.op == CANCEL]
    assert 0.25 <= len(cancels) / len(messages) <= 0.35
    kinds = {(message.type, message.tif) for message in messages if message.op != CANCEL}
    assert kinds == {(LIMIT, GFD), (LIMIT, IOC), (LIMIT, FOK), (MARKET, IOC), (MARKET, FOK)}
    matcher = BaselineMatcher()
    cancels_of_open = 0
    for message in messages:
        if message.op == CANCEL:
            cancels_of_open += matcher.cancel(message.order_id)
        else:
            matcher.place(*message[1:])
    assert 0.85 <= cancels_of_open / len(cancels) < 1.0  # mostly open, a few finished/unknown


def test_generator_is_deterministic_per_seed() -> None:
    assert list(generate(2_000, 5)) == list(generate(2_000, 5))
    assert list(generate(2_000, 5)) != list(generate(2_000, 6))


def test_flow_file_round_trips(tmp_path: Path) -> None:
    messages = list(generate(3_000, 9))
    path = tmp_path / "flow.csv"
    assert write_flow(path, messages) == len(messages)
    assert read_flow(path) == messages
    assert path.read_text().splitlines()[0] == "op,order_id,side,type,tif,price,quantity"


def test_flow_reader_parses_every_field() -> None:
    rows = [
        ["op", "order_id", "side", "type", "tif", "price", "quantity"],
        ["N", "1", "B", "L", "GFD", "10050", "300"],
        ["N", "2", "S", "M", "FOK", "0", "7"],
        ["N", "3", "S", "L", "IOC", "99", "1"],
        ["C", "1", "B", "L", "GFD", "10050", "300"],
        ["C", "9", "", "", "", "", ""],
    ]
    assert parse_rows(rows) == [
        Message("N", "1", BUY, LIMIT, GFD, 10050, 300),
        new_order("2", SELL, MARKET, FOK, 0, 7),
        new_order("3", SELL, LIMIT, IOC, 99, 1),
        cancel("1"),
        cancel("9"),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["X", "1", "B", "L", "GFD", "1", "1"], "line 2: op 'X'"),
        (["N", "1", "Q", "L", "GFD", "1", "1"], "line 2: side 'Q'"),
        (["N", "1", "B", "L", "GTX", "1", "1"], "line 2: tif 'GTX'"),
        (["N", "1", "B", "L", "GFD", "1.5", "1"], "line 2: price '1.5'"),
        (["N", "1", "B", "L", "GFD", "1"], "line 2: expected 7 fields"),
    ],
)
def test_flow_reader_names_the_bad_line(row: list[str], message: str) -> None:
    with pytest.raises(FlowFormatError, match=re.escape(message)):
        parse_rows([["op", "order_id", "side", "type", "tif", "price", "quantity"], row])


def test_flow_reader_requires_the_header() -> None:
    with pytest.raises(FlowFormatError, match="header"):
        parse_rows([["N", "1", "B", "L", "GFD", "1", "1"]])


@pytest.mark.parametrize("engine", ["engine", "baseline"])
def test_engine_bench_last_line_has_the_exact_format(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flow.csv"
    write_flow(
        path,
        [
            new_order("1", SELL, LIMIT, GFD, 101, 10),
            new_order("2", BUY, LIMIT, GFD, 99, 10),
            new_order("3", BUY, MARKET, IOC, 0, 4),
            new_order("4", BUY, LIMIT, GFD, 101, 6),
            cancel("2"),
            new_order("5", BUY, LIMIT, GFD, 98, 10),
        ],
    )
    assert engine_bench_main(["--flow", str(path), "--engine", engine]) == 0
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert RESULT_LINE.match(last_line)
    assert last_line.startswith(
        "messages=6 trades=2 traded_quantity=10 best_bid=98 best_ask=- msgs_per_s="
    )


def test_engine_bench_command_line_with_profile(tmp_path: Path) -> None:
    path = tmp_path / "flow.csv"
    write_flow(path, generate(2_000, 4))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.engine_bench", "--flow", str(path), "--profile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = completed.stdout.strip().splitlines()
    assert RESULT_LINE.match(lines[-1])
    assert any("tottime" in line for line in lines[:-1])


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    write_section(f"{START_MARKER}\nold figures\n{END_MARKER}\n", path)
    path.write_text(path.read_text() + "\n## End to end\n\nkept\n")
    write_section(f"{START_MARKER}\nnew figures\n{END_MARKER}\n", path)
    text = path.read_text()
    assert "new figures" in text and "old figures" not in text
    assert text.endswith("## End to end\n\nkept\n")
    assert text.count(START_MARKER) == 1


def test_run_all_parses_what_engine_bench_prints() -> None:
    result = BenchResult(10, 2, 30, 99, None, 0.5, 0.25)
    assert RESULT_LINE.match(result.line())
    assert run_all.RESULT_LINE.match(result.line()).group("best_ask") == "-"
    assert run_all.TIMING_LINE.match(result.timing_line()).group("cpu_msgs_per_s") == "40"
