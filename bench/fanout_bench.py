"""Fan-out benchmark: many WebSocket and gRPC subscribers of one symbol, rising event rates.

    python -m bench.fanout_bench [--rates 20,50,100,200,400] [--seconds 8]
                                 [--ws 1000] [--grpc 1000] [--subscriber-processes 2]

Starts its own exchange (bench.e2e_bench's BenchStack: its own Redis and Kafka, the engine, the
gateway and stream_svc on free ports; no store, no simulator), lists one symbol and connects
--ws WebSocket subscribers (`/ws/marketdata?symbols=...` on stream_svc's port) and --grpc
gRPC `StreamMarketData` subscribers of it, from --subscriber-processes processes per kind, so
the clients' CPU is their own and measured. The market data comes from real orders: e2e_bench's
load generator (its own process, issue 10's order mix, open loop) places them on the gateway.

An *event* is one market-data message of the symbol (a book change, a trade or a quote: SPEC
gives each its own sequence), so a step's events are the symbol's sequence after it minus the
one before (GetOrderBook/GetQuote on the gateway). A calibration step measures events per order;
each step then offers the order rate that makes the target event rate, waits until every
subscriber got all its events (at most DRAIN_SECONDS), and counts what each got.
Latency runs from the event's own timestamp (the engine stamps its command when it applies it,
so this includes the engine's log write before its publish) to its receipt by the client, on
the subscribers of every --sample-every-th connection (the others only count, so the clients'
parsing stays small); snapshots are not counted.

A step is *held* when p99 <= --p99-ms (50), no subscriber was dropped and every subscriber got
every event. Stepping stops after the first rate not held. CPU per process comes from
/proc/PID/stat; stream_svc's is also given per delivered message. The results go to
BENCHMARKS.md between the fanout-bench markers; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import datetime
import math
import shutil
import signal
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.e2e_bench import (
    BENCHMARKS,
    SYMBOL,
    UNARY,
    BenchStack,
    ClientConfig,
    CpuMeter,
    LoadGenerator,
    OrderMix,
    StackOptions,
    percentile,
    prepare_exchange,
)

START_MARKER = "<!-- fanout-bench:start -->"
END_MARKER = "<!-- fanout-bench:end -->"
DEFAULT_RATES = (20, 50, 100, 200, 400)
WS, GRPC = "ws", "grpc"
CALIBRATION_ORDERS_PER_SECOND = 20
CALIBRATION_SECONDS = 4.0
DRAIN_SECONDS = 15.0
"""After a step's last order, the longest the subscribers get to receive its last events."""
DRAIN_POLL_SECONDS = 0.5
STREAMS_PER_CHANNEL = 50
"""gRPC subscribers sharing one channel (HTTP/2 connection) in a subscriber process."""
CONNECT_CONCURRENCY = 100
CPU_ORDER = ("stream", "engine", "gateway", "redis", "kafka", WS, GRPC, "load")


def log(message: str) -> None:
    print(f"fanout_bench: {message}", file=sys.stderr, flush=True)


# ---- pure parts ------------------------------------------------------------------------------


def rfc3339_ns(value: str, seconds_cache: dict[str, int]) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time with up to 9 fraction digits
    (`2026-12-02T14:10:11.123456789Z`); the whole seconds are parsed once each."""
    whole = value[:19]
    base = seconds_cache.get(whole)
    if base is None:
        base = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        seconds_cache[whole] = base
    fraction = value[20:].rstrip("Z") if value[19:20] == "." else ""
    return base * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))


TIMESTAMP_KEY = '"timestamp":"'


def json_timestamp_ns(text: str, seconds_cache: dict[str, int]) -> int | None:
    """The `timestamp` of a WebSocket market-data message, without parsing the whole JSON."""
    at = text.find(TIMESTAMP_KEY)
    if at < 0:
        return None
    start = at + len(TIMESTAMP_KEY)
    return rfc3339_ns(text[start : text.index('"', start)], seconds_cache)


def order_rate(target_events: float, events_per_order: float) -> int:
    """Orders/s that make `target_events` events/s (at least one order a second)."""
    if events_per_order <= 0:
        raise ValueError(f"events per order must be positive, got {events_per_order}")
    return max(1, round(target_events / events_per_order))


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal whole shares (the first ones take the rest)."""
    if parts <= 0:
        return []
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


@dataclass
class StepResult:
    target_events: int
    orders_per_second: int
    seconds: float
    subscribers: int
    counts: list[int]
    """Events each subscriber got in the step (snapshots excluded)."""
    expected: int
    """Events the engine emitted in the step (the symbol's sequence moved by this much)."""
    latencies_ms: list[float]
    """Sorted, of the sampled subscribers."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Subscribers that ended since they connected, by how (close code or status)."""
    order_errors: int = 0
    orders: int = 0
    order_latencies_ms: list[float] = field(default_factory=list)
    """Sorted, PlaceOrder from due to answer: the engine's path, which every event takes too."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used per process group over the step and its drain."""
    wall: float = 0.0

    @property
    def delivered(self) -> int:
        return sum(self.counts)

    @property
    def short(self) -> int:
        """Subscribers still connected that got fewer events than the engine emitted."""
        return sum(1 for count in self.counts if count < self.expected)

    @property
    def events_per_second(self) -> float:
        """Emitted by the engine: what each subscriber must get."""
        return self.expected / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def held(self, p99_ms: float) -> bool:
        return (
            bool(self.latencies_ms)
            and self.quantile(99) <= p99_ms
            and not self.dropped
            and self.short == 0
            and len(self.counts) == self.subscribers
        )

    def cpu_us_per_message(self, name: str) -> float:
        """CPU microseconds of process group `name` per message delivered to a subscriber."""
        if not self.delivered:
            return math.nan
        return self.cpu.get(name, 0.0) * self.wall / self.delivered * 1e6


def cpu_groups(cores: dict[str, float]) -> dict[str, float]:
    """Cores per process group: subscriber processes `ws-0`, `ws-1`... added up as `ws`."""
    grouped: dict[str, float] = {}
    for name, value in cores.items():
        key = name.split("-", 1)[0] if name.startswith((f"{WS}-", f"{GRPC}-")) else name
        grouped[key] = grouped.get(key, 0.0) + value
    return grouped


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def step_table(steps: Sequence[StepResult], p99_ms: float) -> list[str]:
    columns = [name for name in CPU_ORDER if any(name in step.cpu for step in steps)]
    lines = [
        "| target events/s | orders/s | events/s | subscribers | p50 ms | p99 ms | max ms "
        "| dropped | short | order p99 ms | stream µs CPU per message | "
        + " | ".join(f"{name} cores" for name in columns)
        + " | verdict |",
        "|" + "---|" * (12 + len(columns)),
    ]
    for step in steps:
        dropped = ", ".join(f"{n} {how}" for how, n in step.dropped.items()) or "0"
        lines.append(
            f"| {step.target_events} | {step.orders_per_second} | {step.events_per_second:.1f} "
            f"| {len(step.counts)} of {step.subscribers} | {_ms(step.quantile(50))} "
            f"| {_ms(step.quantile(99))} | {_ms(step.quantile(100))} | {dropped} | {step.short} "
            f"| {_ms(percentile(step.order_latencies_ms, 99))} "
            f"| {step.cpu_us_per_message('stream'):.1f} | "
            + " | ".join(f"{step.cpu.get(name, 0.0):.2f}" for name in columns)
            + f" | {'held' if step.held(p99_ms) else 'NOT held'} |"
        )
    return lines


def highest_held(steps: Sequence[StepResult], p99_ms: float) -> StepResult | None:
    held = [step for step in steps if step.held(p99_ms)]
    return max(held, key=lambda step: step.events_per_second, default=None)


def render_section(
    head: list[str],
    steps: Sequence[StepResult],
    p99_ms: float,
    ws: int,
    grpc_subscribers: int,
    events_per_order: float,
    connect_seconds: float,
) -> str:
    best = highest_held(steps, p99_ms)
    verdict = (
        f"**Highest event rate held: {best.events_per_second:.0f} events/s** "
        f"(target {best.target_events}/s) to {best.subscribers} subscribers"
        if best
        else "**No rate held**"
    )
    lines = [
        *head,
        f"{ws} WebSocket and {grpc_subscribers} gRPC `StreamMarketData` subscribers of one "
        f"symbol, all connected in {connect_seconds:.1f} s, each with its snapshot. Events come "
        f"from real orders (issue 10's mix, {events_per_order:.2f} events per order measured); "
        "latency from the event's engine timestamp to the client's receipt (it includes the "
        "engine's log write before its publish; `order p99 ms`: PlaceOrder's own p99, the "
        "engine path every event takes). Held: p99 ≤ "
        f"{p99_ms:g} ms, no subscriber dropped, every subscriber got every event (`short`: "
        "subscribers that got fewer). CPU in cores over the step; `stream µs CPU per message`: "
        "stream_svc's CPU per message delivered to one subscriber. The subscriber processes "
        "(`ws`, `grpc`) and the load generator (`load`) run on the same cores as the exchange.",
        "",
        verdict + ".",
        "",
        *step_table(steps, p99_ms),
        "",
        END_MARKER,
        "",
    ]
    return "\n".join(lines)


# ---- the subscriber processes ----------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberConfig:
    index: int
    kind: str
    address: str
    """host:port of stream_svc's WebSocket (ws) or gRPC (grpc) server."""
    symbol: str
    subscribers: int
    sample_every: int


class Tally:
    """What one subscriber process's connections got since the last reset."""

    def __init__(self, subscribers: int) -> None:
        self.counts = [0] * subscribers
        self.latencies_ns = array("q")
        self.snapshots = 0
        self.failed: Counter[str] = Counter()
        self.ended: dict[int, str] = {}

    def reset(self) -> None:
        """A new step; `ended` stays: a subscriber dropped once is counted in every later step."""
        self.counts = [0] * len(self.counts)
        self.latencies_ns = array("q")


def subscriber_process(config: SubscriberConfig, conn) -> None:
    """Entry point of a subscriber process (run by e2e_bench's LoadGenerator)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_subscriber_main(config, conn))


async def _subscriber_main(config: SubscriberConfig, conn) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(config.subscribers)
    conn.send("ready")
    tasks: list[asyncio.Task] = []
    channels: list = []
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command is None:
            break
        if command == "connect":
            began = time.monotonic()
            if config.kind == WS:
                tasks = await _connect_ws(config, tally)
            else:
                tasks, channels = await _connect_grpc(config, tally)
            conn.send((tally.snapshots, dict(tally.failed), time.monotonic() - began))
        elif command == "reset":
            tally.reset()
            conn.send("ok")
        elif command == "report":
            alive = [i for i in range(config.subscribers) if i not in tally.ended]
            conn.send(
                (
                    [tally.counts[i] for i in alive] if tally.snapshots else [],
                    tally.latencies_ns.tobytes(),
                    Counter(tally.ended.values()),
                )
            )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()


async def _connect_ws(config: SubscriberConfig, tally: Tally) -> list[asyncio.Task]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = f"ws://{config.address}/ws/marketdata?symbols={config.symbol}"
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    seconds_cache: dict[str, int] = {}
    connected = asyncio.Event()

    async def subscriber(i: int) -> None:
        sampled = i % config.sample_every == 0
        try:
            async with gate:
                websocket = await connect(
                    url, compression=None, ping_interval=None, open_timeout=60
                )
                first = await websocket.recv()
            if '"snapshot":true' not in first:
                raise RuntimeError(f"first message not a snapshot: {first[:80]}")
            tally.snapshots += 1
        except Exception as exc:
            tally.failed[type(exc).__name__] += 1
            tally.ended[i] = "connect failed"
            return
        finally:
            if tally.snapshots + sum(tally.failed.values()) == config.subscribers:
                connected.set()
        try:
            async for text in websocket:
                tally.counts[i] += 1
                if sampled:
                    sent = json_timestamp_ns(text, seconds_cache)  # type: ignore[arg-type]
                    if sent is not None:
                        tally.latencies_ns.append(time.time_ns() - sent)
            tally.ended[i] = "closed 1000"
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else "no close frame"
            tally.ended[i] = f"closed {code}"

    tasks = [asyncio.create_task(subscriber(i)) for i in range(config.subscribers)]
    await connected.wait()
    return tasks


async def _connect_grpc(config: SubscriberConfig, tally: Tally) -> tuple[list[asyncio.Task], list]:
    import grpc

    from exchange.v1 import streams_pb2

    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(config.address, options=options)
        for _ in range(math.ceil(config.subscribers / STREAMS_PER_CHANNEL))
    ]
    request = streams_pb2.StreamMarketDataRequest(symbols=[config.symbol])
    method = "/exchange.v1.StreamService/StreamMarketData"
    parsed = [
        channel.unary_stream(
            method,
            request_serializer=streams_pb2.StreamMarketDataRequest.SerializeToString,
            response_deserializer=streams_pb2.StreamMarketDataResponse.FromString,
        )
        for channel in channels
    ]
    counted = [
        channel.unary_stream(
            method,
            request_serializer=streams_pb2.StreamMarketDataRequest.SerializeToString,
            response_deserializer=bytes,
        )
        for channel in channels
    ]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connected = asyncio.Event()

    async def subscriber(i: int) -> None:
        sampled = i % config.sample_every == 0
        call = (parsed if sampled else counted)[i // STREAMS_PER_CHANNEL](request)
        try:
            async with gate:
                first = await call.read()
            if sampled and not first.book.snapshot:
                raise RuntimeError("first message not a snapshot")
            tally.snapshots += 1
        except Exception as exc:
            tally.failed[type(exc).__name__] += 1
            tally.ended[i] = "connect failed"
            return
        finally:
            if tally.snapshots + sum(tally.failed.values()) == config.subscribers:
                connected.set()
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                tally.counts[i] += 1
                if sampled:
                    payload = getattr(response, response.WhichOneof("payload"))
                    tally.latencies_ns.append(time.time_ns() - payload.timestamp.ToNanoseconds())
            tally.ended[i] = "ended OK"
        except grpc.aio.AioRpcError as exc:
            tally.ended[i] = exc.code().name

    tasks = [asyncio.create_task(subscriber(i)) for i in range(config.subscribers)]
    await connected.wait()
    return tasks, channels


# ---- the run ---------------------------------------------------------------------------------


class Subscribers:
    """The subscriber processes of both kinds, driven through their pipes."""

    def __init__(self, configs: list[SubscriberConfig]) -> None:
        self.configs = configs
        self.generator = LoadGenerator(configs, target=subscriber_process)

    @property
    def pids(self) -> dict[str, int]:
        return {
            f"{config.kind}-{config.index}": process.pid
            for config, process in zip(self.configs, self.generator.processes, strict=True)
        }

    def _all(self, command: str, timeout: float) -> list:
        for conn in self.generator.connections:
            conn.send(command)
        answers = []
        for conn in self.generator.connections:
            if not conn.poll(timeout):
                raise RuntimeError(f"a subscriber process did not answer {command!r}")
            answers.append(conn.recv())
        return answers

    def connect(self) -> tuple[int, Counter[str]]:
        """(subscribers with their snapshot, failures by kind); processes connect together."""
        connected, failed = 0, Counter()
        for snapshots, failures, _ in self._all("connect", 180):
            connected += snapshots
            failed.update(failures)
        return connected, failed

    def reset(self) -> None:
        self._all("reset", 30)

    def report(self) -> tuple[list[int], list[float], Counter[str]]:
        counts: list[int] = []
        latencies: list[float] = []
        ended: Counter[str] = Counter()
        for got, raw, how in self._all("report", 60):
            counts.extend(got)
            latencies.extend(value / 1e6 for value in array("q", raw))
            ended.update(how)
        latencies.sort()
        return counts, latencies, ended

    def close(self) -> None:
        self.generator.close()


async def symbol_sequence(gateway: str, symbol: str) -> int:
    """The symbol's last market-data sequence, as the engine's caches have it."""
    import grpc

    from exchange.v1 import market_pb2, market_pb2_grpc

    async with grpc.aio.insecure_channel(gateway) as channel:
        books = market_pb2_grpc.BookServiceStub(channel)
        book = await books.GetOrderBook(market_pb2.GetOrderBookRequest(symbol=symbol), timeout=10)
        quote = await books.GetQuote(market_pb2.GetQuoteRequest(symbol=symbol), timeout=10)
    return max(book.book.sequence, quote.quote.sequence)


def run_step(
    target_events: int,
    orders_per_second: int,
    seconds: float,
    subscribers: Subscribers,
    load: LoadGenerator,
    meter: CpuMeter,
    gateway: str,
) -> StepResult:
    subscribers.reset()
    first = asyncio.run(symbol_sequence(gateway, SYMBOL))
    before = meter.sample()
    load.start_step(orders_per_second, seconds, time.monotonic() + 0.2, UNARY)
    (records,) = load.results()
    expected = asyncio.run(symbol_sequence(gateway, SYMBOL)) - first
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        counts, latencies, ended = subscribers.report()
        if min(counts, default=0) >= expected or time.monotonic() > deadline:
            break
        time.sleep(DRAIN_POLL_SECONDS)
    after = meter.sample()
    total = sum(config.subscribers for config in subscribers.configs)
    return StepResult(
        target_events=target_events,
        orders_per_second=orders_per_second,
        seconds=seconds,
        subscribers=total,
        counts=counts,
        expected=expected,
        latencies_ms=latencies,
        dropped=ended,
        order_errors=sum(1 for status in records.status if status != 0),
        orders=len(records.status),
        order_latencies_ms=sorted(
            (acked - due) * 1000 for due, acked in zip(records.due, records.acked, strict=True)
        ),
        cpu=cpu_groups(meter.cores(before, after)),
        wall=after[0] - before[0],
    )


def describe(step: StepResult, p99_ms: float) -> str:
    return (
        f"target {step.target_events} events/s ({step.orders_per_second} orders/s): "
        f"{step.events_per_second:.1f} events/s to {len(step.counts)} subscribers, "
        f"p50 {_ms(step.quantile(50))} p99 {_ms(step.quantile(99))} max "
        f"{_ms(step.quantile(100))} ms, dropped {sum(step.dropped.values())}, short "
        f"{step.short}, orders p99 {_ms(percentile(step.order_latencies_ms, 99))} ms, "
        f"order errors {step.order_errors}/{step.orders}, stream "
        f"{step.cpu.get('stream', 0.0):.2f} cores -> "
        + ("held" if step.held(p99_ms) else "NOT held")
    )


def parse_rates(text: str) -> list[int]:
    rates = sorted({int(part) for part in text.split(",") if part.strip()})
    if not rates or rates[0] <= 0:
        raise ValueError(f"--rates must be positive event rates, got {text!r}")
    return rates


def main(argv: list[str] | None = None) -> int:
    from bench.run_all import load_average, machine, section_head, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)), help="events/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per step (8)")
    parser.add_argument("--ws", type=int, default=1000, help="WebSocket subscribers (1000)")
    parser.add_argument("--grpc", type=int, default=1000, help="gRPC subscribers (1000)")
    parser.add_argument(
        "--subscriber-processes", type=int, default=2, help="processes per kind (2)"
    )
    parser.add_argument(
        "--sample-every", type=int, default=10, help="every n-th subscriber measures latency"
    )
    parser.add_argument("--p99-ms", type=float, default=50.0, help="p99 bound for 'held' (50)")
    parser.add_argument("--users", type=int, default=8, help="participants placing orders (8)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS, help="file to write the section to")
    args = parser.parse_args(argv)
    rates = parse_rates(args.rates)
    command = "python -m bench.fanout_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()

    data_dir = Path(tempfile.mkdtemp(prefix="mockex-fanout-bench-"))
    bench = BenchStack(data_dir, StackOptions(without=("store",)))
    subscribers: Subscribers | None = None
    load: LoadGenerator | None = None
    steps: list[StepResult] = []
    try:
        bench.start()
        ports = bench.stack.ports
        gateway = f"127.0.0.1:{ports.gateway}"
        api_keys = asyncio.run(prepare_exchange(gateway, bench.stack.admin_key, args.users))
        configs = [
            SubscriberConfig(i, kind, f"127.0.0.1:{port}", SYMBOL, count, args.sample_every)
            for kind, port, total in (
                (WS, ports.stream_ws, args.ws),
                (GRPC, ports.stream, args.grpc),
            )
            for i, count in enumerate(shares(total, args.subscriber_processes))
            if count
        ]
        subscribers = Subscribers(configs)
        log(f"connecting {args.ws} WebSocket and {args.grpc} gRPC subscribers")
        began = time.monotonic()
        connected, failed = subscribers.connect()
        connect_seconds = time.monotonic() - began
        log(f"{connected} subscribers have their snapshot in {connect_seconds:.1f} s")
        if failed:
            log(f"subscribers that could not connect: {dict(failed)}")
        load = LoadGenerator(
            [ClientConfig(0, 1, gateway, tuple(api_keys), SYMBOL, seed=7, mix=OrderMix())]
        )
        load.prepare(UNARY, [gateway])
        meter = CpuMeter(
            {
                **{name: pid for name, pid in bench.pids.items()},
                **subscribers.pids,
                "load": load.processes[0].pid,
            }
        )
        calibration = run_step(
            0, CALIBRATION_ORDERS_PER_SECOND, CALIBRATION_SECONDS, subscribers, load, meter, gateway
        )
        events_per_order = calibration.expected / max(calibration.orders, 1)
        log(f"calibration: {events_per_order:.2f} events per order")
        for rate in rates:
            orders = order_rate(rate, events_per_order)
            step = run_step(rate, orders, args.seconds, subscribers, load, meter, gateway)
            steps.append(step)
            log(describe(step, args.p99_ms))
            if not step.held(args.p99_ms):
                break
    finally:
        for generator in (load, subscribers):
            if generator is not None:
                with contextlib.suppress(Exception):
                    generator.close()
        bench.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    head = section_head(
        START_MARKER,
        "## Fan-out: WebSocket and gRPC subscribers of one symbol",
        command.strip(),
        started,
        machine(),
        (load_at_start, load_average()),
    )
    write_section(
        render_section(
            head, steps, args.p99_ms, args.ws, args.grpc, events_per_order, connect_seconds
        ),
        args.out,
        START_MARKER,
        END_MARKER,
    )
    log(f"wrote the fanout-bench section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
