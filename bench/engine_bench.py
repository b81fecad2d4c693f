"""Matching-engine throughput on a benchmark order flow (SPEC.md section 6).

The flow is loaded and parsed before the clock starts. Then every message goes to the real
`MatchingEngine` as production sends it: one symbol, user id "" (accounts and self-trade
prevention off), `now` a nanosecond counter (no clock reads in the loop), and each call's event
list walked once to count trades from its `TradeExecuted` events. `--engine baseline` runs the
plain `BaselineMatcher` on the same flow instead. The last line printed is the result:

    messages=N trades=N traded_quantity=N best_bid=TICKS best_ask=TICKS msgs_per_s=N

    python -m bench.engine_bench --flow build/bench/flow-1m.csv [--engine baseline] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.baseline_matcher import BaselineMatcher
from bench.flow import CANCEL, Message, read_flow
from engine_svc.engine import MatchingEngine
from engine_svc.events import TradeExecuted

SYMBOL = "BENCH"
ENGINES = ("engine", "baseline")
PROFILE_TOP = 15


@dataclass(frozen=True)
class BenchResult:
    messages: int
    trades: int
    traded_quantity: int
    best_bid: int | None
    best_ask: int | None
    seconds: float
    """Wall-clock time of the loop (the official figure)."""
    cpu_seconds: float
    """CPU time of this process over the same loop: less sensitive to a busy machine."""

    @property
    def msgs_per_s(self) -> int:
        return int(self.messages / self.seconds) if self.seconds > 0 else 0

    @property
    def cpu_msgs_per_s(self) -> int:
        return int(self.messages / self.cpu_seconds) if self.cpu_seconds > 0 else 0

    def timing_line(self) -> str:
        return (
            f"wall_s={self.seconds:.3f} cpu_s={self.cpu_seconds:.3f} "
            f"cpu_msgs_per_s={self.cpu_msgs_per_s}"
        )

    def line(self) -> str:
        return (
            f"messages={self.messages} trades={self.trades} "
            f"traded_quantity={self.traded_quantity} best_bid={_ticks(self.best_bid)} "
            f"best_ask={_ticks(self.best_ask)} msgs_per_s={self.msgs_per_s}"
        )


def _ticks(price: int | None) -> str:
    return "-" if price is None else str(price)


def run_engine(messages: Sequence[Message]) -> BenchResult:
    """Feed the flow to a fresh MatchingEngine; trades are counted from its events."""
    engine = MatchingEngine()
    engine.add_symbol(SYMBOL, 0)
    place_order = engine.place_order
    cancel_order = engine.cancel_order
    trade_executed = TradeExecuted
    symbol = SYMBOL
    cancel = CANCEL
    trades = 0
    traded_quantity = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    for now, (op, order_id, side, order_type, tif, price, quantity) in enumerate(messages, 1):
        if op == cancel:
            events = cancel_order(order_id, "", now)
        else:
            events = place_order(order_id, "", symbol, side, order_type, tif, price, quantity, now)
        for event in events:
            if event.__class__ is trade_executed:
                trades += 1
                traded_quantity += event.quantity
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    book = engine.symbols[SYMBOL].book
    return BenchResult(
        len(messages),
        trades,
        traded_quantity,
        book.best_bid(),
        book.best_ask(),
        seconds,
        cpu_seconds,
    )


def run_baseline(messages: Sequence[Message]) -> BenchResult:
    """Feed the flow to a fresh BaselineMatcher."""
    matcher = BaselineMatcher()
    place = matcher.place
    cancel_order = matcher.cancel
    cancel = CANCEL
    cpu_started = time.process_time()
    started = time.perf_counter()
    for op, order_id, side, order_type, tif, price, quantity in messages:
        if op == cancel:
            cancel_order(order_id)
        else:
            place(order_id, side, order_type, tif, price, quantity)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    return BenchResult(
        len(messages),
        matcher.trades,
        matcher.traded_quantity,
        matcher.best_bid(),
        matcher.best_ask(),
        seconds,
        cpu_seconds,
    )


RUNNERS = {"engine": run_engine, "baseline": run_baseline}


def profile_run(
    runner, messages: Sequence[Message], top: int = PROFILE_TOP
) -> tuple[BenchResult, str]:
    """Run under cProfile; returns the result and the top functions by own time."""
    profiler = cProfile.Profile()
    result = profiler.runcall(runner, messages)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    return result, out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", required=True, help="order-flow CSV (SPEC.md section 6)")
    parser.add_argument("--engine", choices=ENGINES, default="engine", help="default: engine")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"run under cProfile and print the top {PROFILE_TOP} functions by own time "
        "(the msgs_per_s figure then includes the profiler's overhead)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    messages = read_flow(args.flow)
    print(
        f"loaded {len(messages):,} messages from {args.flow} in "
        f"{time.perf_counter() - started:.2f} s; running {args.engine}",
        file=sys.stderr,
        flush=True,
    )
    runner = RUNNERS[args.engine]
    if args.profile:
        result, report = profile_run(runner, messages)
        print(report)
    else:
        result = runner(messages)
    print(result.timing_line())
    print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
