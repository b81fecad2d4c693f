"""The load the simulator's own bots put on the exchange: a scenario's orders and cancels per
second by bot kind, and the CPU each process spends on them, so an organizer knows what share of
the stack's capacity the market itself takes.

Starts its own stack (ExchangeStack on free ports, data in a temporary directory: Redis, Kafka,
every service including data_svc with MOCKEX_SCENARIO, and Envoy), waits until every symbol has
traded, lets the market run for a warm-up, then counts over the measured window: the
simulator's counters (GetSimulatorStatus, taken before and after), the engine's log records
(the Kafka end offset) and the CPU of every process (/proc/PID/stat). Rewrites its section of
BENCHMARKS.md (between the scenario-bench markers).

    python -m bench.scenario_load [--scenario default] [--seconds 120] [--warmup 30]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench.e2e_bench import CpuMeter
from bench.run_all import (
    BENCHMARKS,
    REPO_ROOT,
    load_average,
    machine,
    section_head,
    write_section,
)

START_MARKER = "<!-- scenario-bench:start -->"
END_MARKER = "<!-- scenario-bench:end -->"


def log(message: str) -> None:
    print(f"scenario_load: {message}", file=sys.stderr, flush=True)


def status(port: int):
    from exchange.internal.v1 import simulator_pb2, simulator_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        request = simulator_pb2.GetSimulatorStatusRequest()
        return stub.GetSimulatorStatus(request, timeout=10).status


def log_end_offset(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def end() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            return (await consumer.end_offsets([partition]))[partition]
        finally:
            await consumer.stop()

    return asyncio.run(end())


def wait_for_trades(port: int, timeout: float) -> float:
    """Seconds until every symbol of the scenario has traded once."""
    from exchange.v1 import market_pb2, market_pb2_grpc

    started = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        trades = market_pb2_grpc.TradeServiceStub(channel)
        book = market_pb2_grpc.BookServiceStub(channel)
        while time.monotonic() - started < timeout:
            symbols = [s.symbol for s in book.ListSymbols(market_pb2.ListSymbolsRequest()).symbols]
            traded = [
                s
                for s in symbols
                if trades.ListTrades(market_pb2.ListTradesRequest(symbol=s, limit=1)).trades
            ]
            if symbols and len(traded) == len(symbols):
                return time.monotonic() - started
            time.sleep(0.5)
    raise TimeoutError(f"not every symbol traded within {timeout:.0f} s")


def measure(args: argparse.Namespace) -> dict:
    from mockex.stack import ExchangeStack, StackPorts

    with tempfile.TemporaryDirectory(prefix="mockex-scenario-bench-") as data_dir:
        stack = ExchangeStack(
            data_dir=Path(data_dir),
            admin_key="bench-admin-key",
            ports=StackPorts.free(),
            scenario=args.scenario,
        )
        try:
            log(f"starting the stack with scenario {args.scenario} (data in {data_dir})")
            started = time.monotonic()
            stack.start_infrastructure()
            stack.start_services()
            up = time.monotonic() - started
            first_trades = wait_for_trades(stack.ports.gateway, 60)
            log(f"up in {up:.1f} s, every symbol traded {first_trades:.1f} s later")
            log(f"warm-up {args.warmup:.0f} s")
            time.sleep(args.warmup)
            meter = CpuMeter({name: process.pid for name, process in stack.processes.items()})
            # The counters next to the CPU samples; the log's end offsets (slower) outside.
            before_offset = log_end_offset(stack.kafka_bootstrap, stack.events_topic)
            before_status = status(stack.ports.data)
            before_cpu = meter.sample()
            log(f"measuring {args.seconds:.0f} s")
            time.sleep(args.seconds)
            after_cpu = meter.sample()
            after_status = status(stack.ports.data)
            after_offset = log_end_offset(stack.kafka_bootstrap, stack.events_topic)
        finally:
            stack.stop()
    wall = after_cpu[0] - before_cpu[0]
    kinds = {}
    for kind in after_status.kinds:
        earlier = next((k for k in before_status.kinds if k.kind == kind.kind), None)
        kinds[kind.kind] = {
            "bots": kind.bots,
            "orders": (kind.orders - (earlier.orders if earlier else 0)) / wall,
            "cancels": (kind.cancels - (earlier.cancels if earlier else 0)) / wall,
        }
    rejected = {
        reason: count - before_status.rejected.get(reason, 0)
        for reason, count in after_status.rejected.items()
        if count - before_status.rejected.get(reason, 0)
    }
    skipped = {
        why: count - before_status.skipped.get(why, 0)
        for why, count in after_status.skipped.items()
        if count - before_status.skipped.get(why, 0)
    }
    return {
        "up": up,
        "first_trades": first_trades,
        "wall": wall,
        "kinds": kinds,
        "records": (after_offset - before_offset) / wall,
        "cores": meter.cores(before_cpu, after_cpu),
        "rejected": rejected,
        "skipped": skipped,
        "clock": (before_status.scenario_seconds, after_status.scenario_seconds),
    }


def section(args: argparse.Namespace, result: dict, command: str, loads: tuple[str, str]) -> str:
    lines = [
        *section_head(
            START_MARKER,
            f"## The simulator's own load (scenario `{args.scenario}`)",
            command,
            datetime.datetime.now(datetime.UTC),
            machine(),
            loads,
        ),
        "**How it is measured.** The bench starts its own stack (Redis, Kafka, every service, "
        f"data_svc playing `{args.scenario}` seed 1, Envoy), waits until every symbol has "
        f"traded, lets the market run {args.warmup:.0f} s, then counts over "
        f"{result['wall']:.0f} s: the simulator's own counters (GetSimulatorStatus), the "
        "engine's log records (the Kafka end offset) and the CPU of every process "
        "(/proc/PID/stat, every thread). Nobody else trades.",
        "",
        f"Up in {result['up']:.1f} s; every symbol traded {result['first_trades']:.1f} s later. "
        f"Scenario clock {result['clock'][0]:.0f} s → {result['clock'][1]:.0f} s.",
        "",
        "| bot kind | bots | orders/s | cancels/s |",
        "|---|---:|---:|---:|",
    ]
    total_orders = total_cancels = 0.0
    for kind, figures in sorted(result["kinds"].items()):
        total_orders += figures["orders"]
        total_cancels += figures["cancels"]
        lines.append(
            f"| {kind} | {figures['bots']} | {figures['orders']:.2f} | {figures['cancels']:.2f} |"
        )
    bots = sum(figures["bots"] for figures in result["kinds"].values())
    lines.append(f"| **all** | **{bots}** | **{total_orders:.2f}** | **{total_cancels:.2f}** |")
    messages = total_orders + total_cancels
    lines += [
        "",
        f"Log records (engine commands, admin ones included): {result['records']:.1f}/s.",
        "",
        "| process | cores used | CPU ms per bot message (idle cost included) |",
        "|---|---:|---:|",
    ]
    cores = result["cores"]
    for name, used in sorted(cores.items(), key=lambda item: -item[1]):
        if name == "machine":
            continue
        per_message = used * 1000 / messages if messages else 0.0
        lines.append(f"| {name} | {used:.3f} | {per_message:.2f} |")
    services = sum(used for name, used in cores.items() if name != "machine")
    lines.append(
        f"| **all processes** | **{services:.3f}** | **{services * 1000 / messages:.2f}** |"
        if messages
        else f"| **all processes** | **{services:.3f}** | |"
    )
    if "machine" in cores:
        lines.append(f"| machine (all CPUs, /proc/stat) | {cores['machine']:.3f} | |")
    lines.append("")
    if result["rejected"]:
        refused = ", ".join(f"{reason} {count}" for reason, count in result["rejected"].items())
        lines += [f"Bot orders the exchange refused in the window: {refused}.", ""]
    if result["skipped"]:
        skipped = ", ".join(f"{why} {count}" for why, count in result["skipped"].items())
        lines += [f"Decisions or messages the simulator skipped: {skipped}.", ""]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default", help="scenario to play (default)")
    parser.add_argument("--seconds", type=float, default=120.0, help="measured window (120)")
    parser.add_argument("--warmup", type=float, default=30.0, help="warm-up seconds (30)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS, help="file to write")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be above 0 and --warmup 0 or more")
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    command = " ".join(
        [executable, "-m", "bench.scenario_load", *(argv if argv is not None else sys.argv[1:])]
    )
    load_at_start = load_average()
    result = measure(args)
    text = section(args, result, command, (load_at_start, load_average()))
    write_section(text, args.out, START_MARKER, END_MARKER)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
