"""End-to-end benchmark: the order path under open-loop load, against a bare gRPC echo.

    python -m bench.e2e_bench [--rates 100,250,500,1000,2000,4000,8000] [--seconds 10]
                              [--parts echo,unary,rest,gateways] [--gateways 2] [--scenario NAME]

Starts its own exchange (ExchangeStack on free ports, data in a temporary directory, its own Redis
and Kafka broker; the engine and the gateway run under `bench.profiled_service` so that one step
can be profiled; no simulator unless --scenario), lists a symbol, creates 64 users with cash and
positions, then steps through the offered rates for each target (issue 10's goals):

- echo: a bare grpc.aio server answering health Check (`bench.echo_server`, its own process),
  the baseline the unary rate is divided by;
- unary: PlaceOrder on the gateway;
- rest: POST /order/place (JSON, X-API-Key) through Envoy over keep-alive HTTP/1.1;
- gateways: PlaceOrder spread over --gateways gateway processes (started after the other
  ladders; on the first gateway's port when they can share it, else on ports of their own).

The load comes from `--clients` separate processes, the same ones for every target, each with its
own asyncio loop: each schedules its share of the offered rate at fixed intervals (OPEN loop: a
send is never held back by a slow answer) and records, per call, when it was due, when it was
sent, when the answer came and its status. Latency is counted from the due time, so a client that
falls behind shows as latency instead of silently lowering the load (no coordinated omission).
The order mix is issue 10's: LIMIT within ±4 ticks of a fixed mid, 70% IOC / 30% GFD, quantities
1–20 (--cancel-share adds cancels).

Per step: achieved answers/s, latency p50/p99/p99.9, errors and timeouts, and the CPU each process
used (from /proc/PID/stat before and after), the load generator's own included. A step is *held*
when p99 <= --p99-ms (20), the achieved rate is >= 95% of the offered one and errors + timeouts
are <= 0.1%. The echo, unary and REST ladders are interleaved: at each rate one step of each, in
alternating order, so noise on a shared machine hits them all; a ladder stops once p99 passes
--stop-p99-ms or its achieved rate falls below 80% of the offered one; a rate not held is measured
once more (--retries) and the better of the two counts; bisection rounds (--refine) then narrow
each ladder's highest rate held. One more unary step, at the highest rate still carried, runs
with the engine and the gateway under pyinstrument; then a latency floor (orders one at a time,
Redis and Kafka round trips on their own); then the scale-out ladder. The results go to
BENCHMARKS.md between the e2e-bench markers (with --scenario: its own markers, unary only); the
rest of the file is left alone; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import functools
import json
import math
import multiprocessing
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"
START_MARKER = "<!-- e2e-bench:start -->"
END_MARKER = "<!-- e2e-bench:end -->"
DEFAULT_RATES = (100, 250, 500, 1000, 2000, 4000, 8000)

ECHO, UNARY, REST, SCALE = "echo", "unary", "rest", "gateways"
"""The targets the same load generator drives: the bare grpc.aio echo, PlaceOrder on the first
gateway, POST /order/place through Envoy, and PlaceOrder spread over every gateway process."""
TARGETS = (ECHO, UNARY, REST, SCALE)
UNARY_OVER_ECHO = (0.5, 0.8)
"""Issue 10: unary PlaceOrder's held rate >= 0.5x the echo's (the goal: 0.8x)."""
REST_OVER_UNARY = 0.5
SHARED_PORT_CONNECTIONS = 4
"""Channels per gateway process each client opens to a shared port (× --channels)."""
HELD_ACHIEVED_SHARE = 0.95
STOP_ACHIEVED_SHARE = 0.80
MAX_FAILED_SHARE = 0.001
PROFILE_ROWS = 14
SYMBOL = "E2E"
TICK_SIZE = 0.01
MID_TICKS = 10_000  # 100.00

PLACE, CANCEL = 0, 1
KIND_NAMES = {PLACE: "place", CANCEL: "cancel"}
STATUS_OK = 0
STATUS_CLIENT_ERROR = -1
STATUS_DEADLINE_EXCEEDED = 4
STATUS_FAILED_PRECONDITION = 9
STATUS_NAMES = {
    -1: "CLIENT_EXCEPTION",
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


def log(message: str) -> None:
    print(f"e2e_bench: {message}", file=sys.stderr, flush=True)


# ---- pure parts: schedule, order mix, statistics ---------------------------------------------


def send_offsets(rate: float, seconds: float, client: int, clients: int) -> list[float]:
    """When client `client` of `clients` sends, in seconds from the step's start.

    Each client sends every clients/rate seconds, shifted by client/rate, so together they send
    exactly every 1/rate seconds: rate * seconds sends in all, evenly spaced.
    """
    if rate <= 0 or seconds <= 0:
        return []
    interval = clients / rate
    phase = client / rate
    count = max(0, math.ceil((seconds - phase) / interval - 1e-9))
    return [phase + k * interval for k in range(count)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q * len(sorted_values) / 100 - 1e-9)
    return sorted_values[min(len(sorted_values), max(rank, 1)) - 1]


@dataclass(frozen=True)
class OrderMix:
    """Limit orders around a fixed mid: a buy at mid + k ticks (a sell at mid - k) with k drawn
    from [-passive_ticks, cross_ticks]; k > 0 crosses the opposite side's resting orders.

    The defaults are issue 10's mix (LIMIT within ±4 ticks of the mid, 70% IOC and 30% GFD,
    quantities 1–20, no cancels), so figures compare with the ones it quotes."""

    cancel_share: float = 0.0
    ioc_share: float = 0.70
    cross_ticks: int = 4
    passive_ticks: int = 4
    max_quantity: int = 20

    def describe(self) -> str:
        return (
            f"LIMIT around a fixed mid (buy at mid+k ticks, sell at mid−k, k uniform in "
            f"[−{self.passive_ticks}, {self.cross_ticks}]: k > 0 crosses), "
            f"{self.ioc_share:.0%} IOC / {1 - self.ioc_share:.0%} GFD, qty 1–{self.max_quantity}"
            + (
                f"; {self.cancel_share:.0%} of the calls cancel a resting order"
                if self.cancel_share
                else "; no cancels"
            )
        )


@dataclass(frozen=True)
class OrderSpec:
    kind: int
    user: int
    side: str = ""
    price_ticks: int = 0
    quantity: int = 0
    tif: str = ""
    order_id: str = ""


def place_request(spec: OrderSpec, symbol: str):
    """The PlaceOrder of a PLACE spec, as every load generator sends it (unary or session)."""
    from exchange.v1 import orders_pb2, types_pb2

    return orders_pb2.PlaceOrderRequest(
        symbol=symbol,
        side=getattr(types_pb2, spec.side),
        type=types_pb2.LIMIT,
        time_in_force=getattr(types_pb2, spec.tif),
        quantity=spec.quantity,
        price=round(spec.price_ticks * TICK_SIZE, 2),
    )


class OrderFlow:
    """The next order of one client: deterministic for a seed and the same resting orders."""

    def __init__(self, seed: int, users: int, mix: OrderMix = OrderMix()) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.mix = mix

    def next(self, resting: collections.deque) -> OrderSpec:
        rng, mix = self.rng, self.mix
        if resting and rng.random() < mix.cancel_share:
            user, order_id = resting.popleft()
            return OrderSpec(CANCEL, user, order_id=order_id)
        side = "BUY" if rng.random() < 0.5 else "SELL"
        k = rng.randint(-mix.passive_ticks, mix.cross_ticks)
        price_ticks = MID_TICKS + (k if side == "BUY" else -k)
        return OrderSpec(
            PLACE,
            rng.randrange(self.users),
            side=side,
            price_ticks=price_ticks,
            quantity=rng.randint(1, mix.max_quantity),
            tif="IOC" if rng.random() < mix.ioc_share else "GFD",
        )


@dataclass
class ClientRecords:
    """What one client saw in one step: one entry per scheduled call."""

    start: float
    due: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    acked: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)
    """Failed calls by 'STATUS: details' (kept short), to say what went wrong."""


@dataclass
class StepResult:
    offered: int
    seconds: float
    sent: int
    ok: int
    """Calls answered: OK, or a cancel refused because the order had already finished."""
    achieved: float
    """Answers per second, over the time from the step's start to the last answer."""
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    timeouts: int
    errors: dict[str, int]
    """Non-OK statuses other than DEADLINE_EXCEEDED, by name (a cancel that lost the race to a
    fill is answered FAILED_PRECONDITION: an answer, counted in `cancel_too_late`, not here)."""
    cancel_too_late: int
    lag_p99_ms: float
    """How late the clients sent (p99): their own share of the latency."""
    drain_s: float
    """From the end of the send window to the last answer."""
    cancel_p99_ms: float = math.nan
    messages: dict[str, int] = field(default_factory=dict)
    """The failures' messages, most frequent first (a few)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used per process over the step (1.0 = one core busy the whole step)."""
    label: str = ""
    attempts: int = 1
    ladder: str = ""
    """The target measured (ECHO, UNARY, ...); "" for bench.session_bench's steps."""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def held(self, p99_ms: float) -> bool:
        return (
            self.p99_ms <= p99_ms
            and self.achieved >= HELD_ACHIEVED_SHARE * self.offered
            and (self.error_count + self.timeouts) <= MAX_FAILED_SHARE * max(self.sent, 1)
        )

    def keep_stepping(self, stop_p99_ms: float) -> bool:
        return self.p99_ms <= stop_p99_ms and self.achieved >= STOP_ACHIEVED_SHARE * self.offered


def summarize(offered: int, seconds: float, records: Iterable[ClientRecords]) -> StepResult:
    latencies: list[float] = []
    cancel_latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    timeouts = too_late = sent = 0
    start = math.inf
    last_answer = -math.inf
    for client in records:
        messages.update(client.messages)
        start = min(start, client.start)
        for due, sent_at, acked, status, kind in zip(
            client.due, client.sent, client.acked, client.status, client.kind, strict=True
        ):
            sent += 1
            lags.append(sent_at - due)
            last_answer = max(last_answer, acked)
            answered = status == STATUS_OK
            if status == STATUS_FAILED_PRECONDITION and kind == CANCEL:
                too_late += 1
                answered = True
            if answered:
                latency = (acked - due) * 1000
                latencies.append(latency)
                if kind == CANCEL:
                    cancel_latencies.append(latency)
            elif status == STATUS_DEADLINE_EXCEEDED:
                timeouts += 1
            else:
                errors[STATUS_NAMES.get(status, str(status))] += 1
    latencies.sort()
    cancel_latencies.sort()
    lags.sort()
    elapsed = max(seconds, last_answer - start) if sent else seconds
    return StepResult(
        offered=offered,
        seconds=seconds,
        sent=sent,
        ok=len(latencies),
        achieved=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        p999_ms=percentile(latencies, 99.9),
        max_ms=latencies[-1] if latencies else math.nan,
        timeouts=timeouts,
        errors=dict(errors),
        cancel_too_late=too_late,
        lag_p99_ms=percentile(lags, 99) * 1000,
        drain_s=max(0.0, last_answer - start - seconds) if sent else 0.0,
        cancel_p99_ms=percentile(cancel_latencies, 99),
        messages=dict(messages.most_common(5)),
    )


def bisect_rate(held_rate: int, failed_rate: int, step: int = 50) -> int | None:
    """A rate halfway between (rounded to `step`), or None when none is left between them."""
    middle = round((held_rate + failed_rate) / 2 / step) * step
    if middle <= held_rate or middle >= failed_rate:
        return None
    return middle


def better(first: StepResult, second: StepResult, p99_ms: float) -> StepResult:
    """Of two measurements of the same rate, the one that held, else the lower p99."""
    if first.held(p99_ms) != second.held(p99_ms):
        return first if first.held(p99_ms) else second
    return first if first.p99_ms <= second.p99_ms else second


def highest_held(steps: Iterable[StepResult], p99_ms: float) -> StepResult | None:
    """The highest offered rate held, below every rate that was not held (a rate held above a
    failed one is luck, not capacity)."""
    ordered = sorted((step for step in steps if not step.label), key=lambda step: step.offered)
    best = None
    for step in ordered:
        if not step.held(p99_ms):
            break
        best = step
    return best


def parse_rates(text: str) -> list[int]:
    rates = sorted({int(part) for part in text.split(",") if part.strip()})
    if not rates or rates[0] <= 0:
        raise ValueError(f"rates must be positive integers: {text!r}")
    return rates


# ---- CPU per process, from /proc -------------------------------------------------------------


def stat_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks, every thread) from a /proc/PID/stat line."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def stat_comm(stat_line: str) -> str:
    return stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]


def machine_busy_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line."""
    values = [int(value) for value in proc_stat.splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def process_ticks(pid: int) -> int:
    try:
        return stat_ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return 0


def thread_ticks(pid: int) -> dict[str, int]:
    """Clock ticks per thread name (threads of the same name added up)."""
    totals: Counter[str] = Counter()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            line = (task / "stat").read_text()
        except OSError:
            continue
        totals[stat_comm(line)] += stat_ticks(line)
    return dict(totals)


class CpuMeter:
    """Cores used by each named process between `start` and `stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[float, dict[str, int], tuple[int, int]]:
        machine = machine_busy_ticks(Path("/proc/stat").read_text())
        return time.monotonic(), {n: process_ticks(p) for n, p in self.pids.items()}, machine

    def cores(self, before, after) -> dict[str, float]:
        wall = after[0] - before[0]
        if wall <= 0:
            return {}
        result = {name: (after[1][name] - before[1][name]) / self.hz / wall for name in self.pids}
        busy = after[2][0] - before[2][0]
        total = after[2][1] - before[2][1]
        cpus = os.cpu_count() or 1
        result["machine"] = busy / total * cpus if total else 0.0
        return result


# ---- the load generator (one process per client) ---------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    index: int
    clients: int
    address: str
    """The gateway of the unary target (and of bench.session_bench's sessions)."""
    api_keys: tuple[str, ...]
    symbol: str
    seed: int
    channels: int = 1
    """gRPC channels (one TCP connection each) per server address."""
    timeout_s: float = 10.0
    mix: OrderMix = OrderMix()
    rest_connections: int = 16
    """Keep-alive HTTP/1.1 connections each client opens ahead of the REST load (more are
    opened while all are busy)."""


CallFunction = Callable[[int, ClientRecords], Awaitable[None]]


def client_process(config: ClientConfig, conn) -> None:
    """Entry point of a load-generator process: runs steps that the parent sends on `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_client_main(config, conn))


def _count_failure(records: ClientRecords, message: str) -> None:
    records.messages[message] = records.messages.get(message, 0) + 1


def rest_place_body(spec: OrderSpec, symbol: str) -> bytes:
    """SPEC.md's POST /order/place body (camelCase JSON) for one order."""
    return (
        f'{{"symbol":"{symbol}","side":"{spec.side}","type":"LIMIT",'
        f'"timeInForce":"{spec.tif}","quantity":{spec.quantity},'
        f'"price":{spec.price_ticks * TICK_SIZE:.2f}}}'
    ).encode()


async def _client_main(config: ClientConfig, conn) -> None:
    """One load-generator process. Every target (echo, unary, rest, gateways) is driven by the
    same scheduler (run_client_steps); a target's connections are opened when the parent
    prepares it, so gateways started later are reached too."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bench import rest_client
    from exchange.v1 import orders_pb2, orders_pb2_grpc, types_pb2

    options = [("grpc.use_local_subchannel_pool", 1)]
    channels: list[grpc.aio.Channel] = []
    pools: list[rest_client.ConnectionPool] = []
    flow = OrderFlow(config.seed, len(config.api_keys), config.mix)
    resting: collections.deque = collections.deque(maxlen=20_000)
    track_resting = config.mix.cancel_share > 0
    metadata = [(("x-api-key", key),) for key in config.api_keys]
    still_resting = (types_pb2.NEW, types_pb2.PARTIALLY_FILLED)

    async def open_channels(addresses: Sequence[str]) -> list[grpc.aio.Channel]:
        """`config.channels` channels per address, interleaved, so that calls taken round
        robin alternate between the addresses."""
        opened = [
            grpc.aio.insecure_channel(address, options=options)
            for _ in range(config.channels)
            for address in addresses
        ]
        channels.extend(opened)
        for channel in opened:
            await asyncio.wait_for(channel.channel_ready(), 30)
        return opened

    def order_call(stubs: list) -> CallFunction:
        async def call(i: int, records: ClientRecords) -> None:
            spec = flow.next(resting)
            stub = stubs[i % len(stubs)]
            kind, status = spec.kind, STATUS_OK
            records.sent[i] = time.monotonic()
            try:
                if kind == PLACE:
                    request = place_request(spec, config.symbol)
                    answer = await stub.PlaceOrder(
                        request, metadata=metadata[spec.user], timeout=config.timeout_s
                    )
                    if track_resting and answer.order.status in still_resting:
                        resting.append((spec.user, answer.order.order_id))
                else:
                    await stub.CancelOrder(
                        orders_pb2.CancelOrderRequest(order_id=spec.order_id),
                        metadata=metadata[spec.user],
                        timeout=config.timeout_s,
                    )
            except grpc.aio.AioRpcError as exc:
                status = exc.code().value[0]
                if status != STATUS_FAILED_PRECONDITION:
                    details = (exc.details() or "")[:160]
                    _count_failure(records, f"{exc.code().name} {KIND_NAMES[kind]}: {details}")
            except Exception as exc:
                status = STATUS_CLIENT_ERROR
                _count_failure(records, f"CLIENT_EXCEPTION {KIND_NAMES[kind]}: {exc!r:.160}")
            records.acked[i] = time.monotonic()
            records.status[i] = status
            records.kind[i] = kind

        return call

    def echo_call(stubs: list) -> CallFunction:
        request = health_pb2.HealthCheckRequest()

        async def call(i: int, records: ClientRecords) -> None:
            stub = stubs[i % len(stubs)]
            status = STATUS_OK
            records.sent[i] = time.monotonic()
            try:
                await stub.Check(request, timeout=config.timeout_s)
            except grpc.aio.AioRpcError as exc:
                status = exc.code().value[0]
                _count_failure(records, f"{exc.code().name} echo: {(exc.details() or '')[:160]}")
            except Exception as exc:
                status = STATUS_CLIENT_ERROR
                _count_failure(records, f"CLIENT_EXCEPTION echo: {exc!r:.160}")
            records.acked[i] = time.monotonic()
            records.status[i] = status

        return call

    def rest_call(pool: rest_client.ConnectionPool, host: str) -> CallFunction:
        headers = [
            {"Content-Type": "application/json", "X-API-Key": key} for key in config.api_keys
        ]

        async def call(i: int, records: ClientRecords) -> None:
            spec = flow.next(resting)
            kind, status = spec.kind, STATUS_OK
            if kind == PLACE:
                body = rest_place_body(spec, config.symbol)
                data = rest_client.request_bytes(
                    "POST", "/order/place", host, headers[spec.user], body
                )
            else:
                data = rest_client.request_bytes(
                    "DELETE", f"/order/{spec.order_id}", host, headers[spec.user], b""
                )
            records.sent[i] = time.monotonic()
            try:
                http_status, payload = await pool.request(data, config.timeout_s)
                if http_status != 200:
                    code, message = rest_client.error_code(payload)
                    status = 2 if code is None else code  # UNKNOWN: not the error shape
                    if status != STATUS_FAILED_PRECONDITION:
                        _count_failure(
                            records, f"HTTP {http_status} {KIND_NAMES[kind]}: {message[:160]}"
                        )
                elif track_resting and kind == PLACE:
                    order = json.loads(payload)
                    if order.get("status") in ("NEW", "PARTIALLY_FILLED"):
                        resting.append((spec.user, order["orderId"]))
            except TimeoutError:
                status = STATUS_DEADLINE_EXCEEDED
            except Exception as exc:
                status = STATUS_CLIENT_ERROR
                _count_failure(records, f"CLIENT_EXCEPTION {KIND_NAMES[kind]}: {exc!r:.160}")
            records.acked[i] = time.monotonic()
            records.status[i] = status
            records.kind[i] = kind

        return call

    async def prepare(target: str, addresses: Sequence[str]) -> CallFunction:
        if target in (UNARY, SCALE):
            opened = await open_channels(addresses or [config.address])
            return order_call([orders_pb2_grpc.OrderServiceStub(channel) for channel in opened])
        if target == ECHO:
            opened = await open_channels(addresses)
            return echo_call([health_pb2_grpc.HealthStub(channel) for channel in opened])
        if target == REST:
            host, port = addresses[0].rsplit(":", 1)
            pool = rest_client.ConnectionPool(host, int(port))
            pools.append(pool)
            await pool.warm(config.rest_connections)
            return rest_call(pool, addresses[0])
        raise ValueError(f"unknown target {target!r}")

    conn.send("ready")
    try:
        await run_client_steps(config, conn, prepare=prepare)
    finally:
        for channel in channels:
            await channel.close()
        for pool in pools:
            await pool.close()


async def run_client_steps(
    config: ClientConfig,
    conn,
    call: CallFunction | None = None,
    prepare: Callable[[str, Sequence[str]], Awaitable[CallFunction]] | None = None,
) -> None:
    """The commands the parent sends on `conn`, until it sends None: ("prepare", target,
    addresses) makes `prepare` open a target's connections; ("step", target, rate, seconds,
    start) runs `call(i, records)` of that target (`call` itself for target "") for each of
    this client's due times, started when due whatever is still in flight (open loop), then
    sends the records back to the parent."""
    loop = asyncio.get_running_loop()
    calls: dict[str, CallFunction] = {"": call} if call is not None else {}
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command is None:
            break
        if command[0] == "prepare":
            _, target, addresses = command
            try:
                if prepare is None:
                    raise ValueError("this client has no targets to prepare")
                calls[target] = await prepare(target, addresses)
                conn.send("ready")
            except Exception as exc:
                conn.send(f"could not prepare {target}: {exc!r}")
            continue
        _, target, rate, seconds, start = command
        run = calls[target]
        offsets = send_offsets(rate, seconds, config.index, config.clients)
        count = len(offsets)
        records = ClientRecords(
            start=start,
            due=[start + offset for offset in offsets],
            sent=[0.0] * count,
            acked=[0.0] * count,
            status=[STATUS_CLIENT_ERROR] * count,
            kind=[PLACE] * count,
        )
        tasks: set[asyncio.Task] = set()
        due = records.due
        i = 0
        while i < count:
            wait = due[i] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            while i < count and due[i] <= now:
                task = loop.create_task(run(i, records))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        if tasks:
            await asyncio.gather(*list(tasks))
        conn.send(
            (
                records.start,
                array("d", records.due).tobytes(),
                array("d", records.sent).tobytes(),
                array("d", records.acked).tobytes(),
                array("i", records.status).tobytes(),
                array("b", records.kind).tobytes(),
                records.messages,
            )
        )


def _records_from_wire(message) -> ClientRecords:
    start, due, sent, acked, status, kind, messages = message
    return ClientRecords(
        messages=messages,
        start=start,
        due=array("d", due).tolist(),
        sent=array("d", sent).tolist(),
        acked=array("d", acked).tolist(),
        status=array("i", status).tolist(),
        kind=array("b", kind).tolist(),
    )


class LoadGenerator:
    """Client processes, each running `target(config, conn)` (the unary client by default)."""

    def __init__(self, configs: list, target: Callable = client_process) -> None:
        context = multiprocessing.get_context("spawn")
        self.connections = []
        self.processes = []
        for config in configs:
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=target, args=(config, child_end), name=f"client-{config.index}"
            )
            process.start()
            child_end.close()
            self.connections.append(parent_end)
            self.processes.append(process)
        self._wait_ready("did not start")

    def _wait_ready(self, what: str) -> None:
        for conn in self.connections:
            answer = conn.recv() if conn.poll(60) else "no answer in 60 s"
            if answer != "ready":
                raise RuntimeError(f"a load-generator process {what}: {answer}")

    @property
    def pids(self) -> dict[str, int]:
        return {f"client-{i}": process.pid for i, process in enumerate(self.processes)}

    def prepare(self, target: str, addresses: Sequence[str]) -> None:
        """Every client opens its connections of `target` to `addresses`."""
        for conn in self.connections:
            conn.send(("prepare", target, tuple(addresses)))
        self._wait_ready(f"could not reach {target} at {', '.join(addresses)}")

    def start_step(self, rate: int, seconds: float, start: float, target: str = "") -> None:
        for conn in self.connections:
            conn.send(("step", target, rate, seconds, start))

    def results(self) -> list[ClientRecords]:
        return [_records_from_wire(conn.recv()) for conn in self.connections]

    def close(self) -> None:
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


# ---- the stack -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackOptions:
    gateways: int = 1
    """Gateway processes started with the stack (add_gateway starts more later)."""
    engine_batch_size: int | None = None
    without: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    scenario: str = ""
    """data_svc plays this scenario while the load runs ("": no simulator)."""
    edge: bool = False
    """Envoy in front of the first gateway (the REST target)."""
    echo: bool = False
    """The bare grpc.aio echo server (bench.echo_server), the baseline target."""
    gateway_group: int = 1
    """Gateway processes there will be in all (add_gateway included): more than one share the
    first one's port when gateway_port allows, so every one of them starts ready to share."""
    gateway_port: str = "auto"
    """Where added gateways listen: "shared" (the first gateway's port, SO_REUSEPORT),
    "separate" (a port each) or "auto" (shared if gateway_svc can share its port, else
    separate)."""


def gateway_can_share_port() -> bool:
    """Whether gateway_svc serves one port from several processes (MOCKEX_GATEWAY_PROCESSES)."""
    from gateway_svc.config import GatewayConfig

    return "processes" in GatewayConfig.__dataclass_fields__


def envoy_downstream(stats: str) -> tuple[int, int]:
    """(connections accepted, requests) of the edge's HTTP listener from Envoy's /stats text:
    with keep-alive working, far fewer connections than requests."""
    values = {}
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        values[name.strip()] = value.strip()
    return (
        int(values.get("http.edge.downstream_cx_total", 0)),
        int(values.get("http.edge.downstream_rq_total", 0)),
    )


def read_envoy_downstream(admin_port: int) -> tuple[int, int] | None:
    import urllib.parse
    import urllib.request

    pattern = urllib.parse.quote(r"^http\.edge\.downstream_(cx|rq)_total$")
    url = f"http://127.0.0.1:{admin_port}/stats?filter={pattern}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return envoy_downstream(answer.read().decode())
    except OSError as exc:
        log(f"Envoy's stats: {exc!r}")
        return None


def section_markers(scenario: str) -> tuple[str, str]:
    """A run with the simulator's bots trading has a section of its own."""
    if not scenario:
        return START_MARKER, END_MARKER
    return f"<!-- e2e-bench-{scenario}:start -->", f"<!-- e2e-bench-{scenario}:end -->"


class BenchStack:
    """ExchangeStack with its own Redis and Kafka, the engine and gateway(s) under the wrapper."""

    def __init__(self, data_dir: Path, options: StackOptions) -> None:
        from mockex.stack import ExchangeStack, StackPorts

        env = {
            "MOCKEX_ENGINE_TIMEOUT_SECONDS": "5",
            # The per-user rate limit protects a shared exchange; here it would cap the load.
            "MOCKEX_RATE_LIMIT_PER_SECOND": "1000000",
            "MOCKEX_RATE_LIMIT_BURST": "1000000",
            **dict(options.extra_env),
        }
        if options.engine_batch_size:
            env["MOCKEX_ENGINE_BATCH_SIZE"] = str(options.engine_batch_size)
        self.options = options
        self.profile_dir = data_dir / "profiles"
        self.stack = ExchangeStack(
            data_dir=data_dir,
            admin_key="bench-" + secrets.token_hex(8),
            ports=StackPorts.free(),
            extra_env=env,
        )
        self.gateway_ports: list[int] = []
        """One entry per gateway process (the same port twice when they share it)."""
        group = max(options.gateways, options.gateway_group)
        self.sharing = group > 1 and (
            options.gateway_port == "shared"
            or (options.gateway_port == "auto" and gateway_can_share_port())
        )
        """Whether the gateways share one port: each then also listens on an address of its own
        (MOCKEX_GATEWAY_PROCESS_ADDRESS), where its health check reaches that very process."""
        self.gateway_group = group
        self.wrapped: list[str] = []
        self.echo_port = 0

    def _start_wrapped(
        self, name: str, module: str, port: int | str, env: dict[str, str], profiled: bool = True
    ) -> None:
        from mockex import processes
        from mockex.stack import wait_serving

        stack = self.stack
        env = {
            **stack.service_env(),
            **env,
            "MOCKEX_BENCH_SERVICE": module,
            "MOCKEX_BENCH_PROFILE_DIR": str(self.profile_dir),
            "MOCKEX_BENCH_PROFILE_NAME": name,
        }
        process = processes.python_service(
            name, "bench.profiled_service", env, stack.data_dir / "logs"
        )
        stack.processes[name] = process
        wait_serving(process, port, 60)
        if profiled:
            self.wrapped.append(name)

    def start(self) -> None:
        from mockex import processes
        from mockex.stack import wait_serving

        stack = self.stack
        log(f"starting Redis and Kafka (data in {stack.data_dir})")
        stack.start_infrastructure()
        log("starting the services")
        self._start_wrapped("engine", "engine_svc", stack.ports.engine, {})
        for name in ("store", "stream"):
            if name not in self.options.without:
                # Wrapped too (never profiled), so that every service starts the same way.
                port = getattr(stack.ports, name)
                self._start_wrapped(name, f"{name}_svc", port, {}, profiled=False)
        self._start_gateway(stack.ports.gateway)
        for _ in range(self.options.gateways - 1):
            self.add_gateway()
        if self.options.edge:
            log("starting Envoy in front of the gateway")
            stack.start_edge()
        if self.options.echo:
            self.echo_port = processes.free_port()
            log(f"starting the bare grpc.aio echo server on {self.echo_port}")
            echo = processes.python_service(
                "echo",
                "bench.echo_server",
                {"MOCKEX_BENCH_ECHO_ADDRESS": f"127.0.0.1:{self.echo_port}"},
                stack.data_dir / "logs",
            )
            stack.processes["echo"] = echo
            wait_serving(echo, self.echo_port, 30)
        if self.options.scenario:
            self._start_scenario()

    def _start_gateway(self, port: int) -> str:
        name = "gateway" if not self.gateway_ports else f"gateway{len(self.gateway_ports) + 1}"
        env = {
            "MOCKEX_GATEWAY_GRPC_ADDRESS": f"0.0.0.0:{port}",
            "MOCKEX_GATEWAY_ID": f"bench-{name}-{secrets.token_hex(3)}",
        }
        health: int | str = port
        if self.sharing:
            health = self._process_address(name)
            env["MOCKEX_GATEWAY_PROCESSES"] = str(self.gateway_group)
            env["MOCKEX_GATEWAY_PROCESS_ADDRESS"] = health
        self._start_wrapped(name, "gateway_svc", health, env)
        self.gateway_ports.append(port)
        return name

    def _process_address(self, name: str) -> str:
        """A Unix socket of the process's own (a loopback port when the path is too long for
        one), beside the port it shares."""
        from mockex import processes

        path = self.stack.data_dir / "run" / f"{name}.sock"
        if len(str(path)) <= 100:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            return f"unix:{path}"
        return f"127.0.0.1:{processes.free_port()}"

    @property
    def shared_port(self) -> bool:
        return len(self.gateway_ports) > 1 and len(set(self.gateway_ports)) == 1

    def add_gateway(self) -> str:
        """One more gateway process, on the first one's port when they share it, else on a port
        of its own; its name."""
        from mockex import processes

        port = self.gateway_ports[0] if self.sharing else processes.free_port()
        return self._start_gateway(port)

    def _start_scenario(self) -> None:
        """data_svc playing the scenario, once it runs. Its rules' per-key message rate would
        cap the load generator's users, so the gateway's own (unlimited here) is put back; the
        bots keep to the scenario's rate by themselves."""
        import grpc

        from exchange.v1 import admin_pb2, admin_pb2_grpc, competition_pb2, competition_pb2_grpc

        stack = self.stack
        log(f"starting data_svc playing {self.options.scenario}")
        env = {"MOCKEX_SCENARIO": self.options.scenario}
        self._start_wrapped("data", "data_svc", stack.ports.data, env, profiled=False)
        metadata = (("x-api-key", stack.admin_key),)
        with grpc.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
            schedule = competition_pb2_grpc.CompetitionServiceStub(channel).GetSchedule
            deadline = time.monotonic() + 60
            while schedule(competition_pb2.GetScheduleRequest(), timeout=10).state != (
                competition_pb2.RUNNING
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"scenario {self.options.scenario} is not running")
                time.sleep(0.2)
            admin_pb2_grpc.AdminServiceStub(channel).SetRules(
                admin_pb2.SetRulesRequest(message_rate_per_second=0),
                metadata=metadata,
                timeout=10,
            )

    @property
    def pids(self) -> dict[str, int]:
        """Every process of the stack by name (the edge as `envoy`)."""
        return {
            ("envoy" if name == "edge" else name): process.pid
            for name, process in self.stack.processes.items()
        }

    def profile(self, on: bool) -> None:
        for name in self.wrapped:
            os.kill(self.stack.processes[name].pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    def profiles(self, timeout: float = 60) -> dict[str, dict[str, str]]:
        """name -> {'flat': ..., 'tree': ...} profile texts, once every wrapped process has
        written its report."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, str]] = {}
        for name in self.wrapped:
            done = self.profile_dir / f"{name}.done"
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            texts = {}
            for kind in ("flat", "tree"):
                path = self.profile_dir / f"{name}.{kind}.txt"
                if path.exists():
                    texts[kind] = path.read_text()
            if texts:
                results[name] = texts
        return results

    def stop(self) -> None:
        self.stack.stop()


async def prepare_exchange(address: str, admin_key: str, users: int) -> list[str]:
    """List the symbol and create the users (cash and shares enough for any run); API keys."""
    import grpc

    from tests.integration.exchange_client import Exchange

    async with grpc.aio.insecure_channel(address) as channel:
        exchange = Exchange(channel, admin_key)
        symbol = await exchange.add_symbol(SYMBOL, tick_size=TICK_SIZE)
        participants = [
            await exchange.participant(cash=1e10, positions={symbol: 10**9}) for _ in range(users)
        ]
        return [participant.api_key for participant in participants]


async def _timed(call, count: int) -> tuple[float, float]:
    """(p50, p99) in ms of `count` sequential awaits of call()."""
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - began) * 1000)
    latencies.sort()
    return percentile(latencies, 50), percentile(latencies, 99)


async def latency_floor(
    gateway: str, api_key: str, redis_url: str, kafka_bootstrap: str, count: int = 300
) -> dict[str, tuple[float, float]]:
    """What one order costs with nothing else in flight, and the hops it is made of: a
    sequential PlaceOrder, a Redis round trip, and a Kafka write with the engine's producer
    settings (acks=all, idempotent, linger 1 ms) and with linger 0, to a topic of its own."""
    import grpc
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from exchange.v1 import orders_pb2, orders_pb2_grpc, types_pb2
    from mockex import processes

    results: dict[str, tuple[float, float]] = {}
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        request = orders_pb2.PlaceOrderRequest(
            symbol=SYMBOL,
            side=types_pb2.BUY,
            type=types_pb2.LIMIT,
            time_in_force=types_pb2.IOC,
            quantity=1,
            price=round((MID_TICKS - 500) * TICK_SIZE, 2),
        )
        metadata = (("x-api-key", api_key),)
        results["PlaceOrder, one at a time (IOC, no fill)"] = await _timed(
            lambda: stub.PlaceOrder(request, metadata=metadata, timeout=10), count
        )
    redis = Redis.from_url(redis_url)
    try:
        results["Redis PING (redis-py asyncio)"] = await _timed(redis.ping, count)
    finally:
        await redis.aclose()
    topic = "bench.e2e.probe"
    await processes.create_topics(kafka_bootstrap, [topic])
    for linger in (1, 0):
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger,
        )
        await producer.start()
        try:
            send = functools.partial(producer.send_and_wait, topic, b"x" * 300, partition=0)
            await _timed(send, 50)
            results[f"Kafka send_and_wait, acks=all, linger {linger} ms"] = await _timed(
                send, count
            )
        finally:
            await producer.stop()
    return results


# ---- rendering -------------------------------------------------------------------------------


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def flat_profile_rows(text: str, rows: int = PROFILE_ROWS) -> tuple[str, list[str]]:
    """(header, top rows) of a pyinstrument flat profile; paths made relative to the repo."""
    lines = [line.rstrip() for line in text.splitlines()]
    header = next((line.strip() for line in lines if "Duration:" in line), "")
    entries = [
        line.replace(str(REPO_ROOT) + os.sep, "").replace(sys.prefix + os.sep, "")
        for line in lines
        if re.match(r"^\s*[\d.]+%?\s+\S", line)
    ]
    return header, entries[:rows]


def tree_rows(text: str, rows: int = 32) -> list[str]:
    """The call tree of a pyinstrument console profile below asyncio.run (the wrapper's and
    runpy's frames above it say nothing), dedented, paths relative to the repository."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if "run  asyncio/runners.py" in line), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line.startswith("Profile at")), -1)
    body = [line for line in lines[start + 1 :] if line.strip()][:rows]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
    return [
        line[indent:].replace(str(REPO_ROOT) + os.sep, "").replace(sys.prefix + os.sep, "")
        for line in body
    ]


def idle_share(text: str) -> float | None:
    """The profiled loop's share of samples waiting in select/epoll (idle), from a flat profile."""
    total = 0.0
    found = False
    for line in text.splitlines():
        match = re.match(r"^\s*([\d.]+)%\s+(.*)$", line)
        if match and re.search(r"\b(select|poll|epoll|_run_once.*idle|\[idle\])\b", match[2]):
            total += float(match[1])
            found = True
    return total / 100 if found else None


CPU_COLUMNS = (
    "redis",
    "kafka",
    "engine",
    "store",
    "stream",
    "gateway",
    "gateway2",
    "gateway3",
    "gateway4",
    "envoy",
    "echo",
    "data",
    "clients",
    "bench",
)


def cpu_columns(cpu: dict[str, float]) -> dict[str, float]:
    grouped: dict[str, float] = {}
    for name, value in cpu.items():
        key = "clients" if name.startswith("client-") else name
        grouped[key] = grouped.get(key, 0.0) + value
    return grouped


def cpu_per_order_ms(step: StepResult) -> dict[str, float]:
    """CPU milliseconds each process spent per answer in a step (contention barely moves
    this, unlike latency: the figure to compare runs on a shared machine by)."""
    grouped = cpu_columns(step.cpu)
    grouped.pop("machine", None)
    if step.achieved <= 0:
        return {}
    return {name: value / step.achieved * 1000 for name, value in grouped.items()}


LADDER_TITLES = {
    ECHO: "Bare grpc.aio echo (health `Check`, a server process of its own)",
    UNARY: "Unary `PlaceOrder`, 1 gateway process",
    REST: "REST `POST /order/place` through Envoy, 1 gateway process",
    SCALE: "Unary `PlaceOrder` spread over {gateways} gateway processes",
}
LADDER_SHORT = {ECHO: "echo", UNARY: "unary", REST: "REST", SCALE: "{gateways} gateways"}


def ladder_title(ladder: str, gateways: int, short: bool = False) -> str:
    return (LADDER_SHORT if short else LADDER_TITLES)[ladder].format(gateways=gateways)


def relevant_process(ladder: str, name: str) -> bool:
    """Whether a process works for the ladder's calls (the others only idle meanwhile): the echo
    server and Envoy for their own ladders only."""
    if name == "echo":
        return ladder == ECHO
    if ladder == ECHO:
        return name in ("machine", "bench") or name.startswith("client-")
    if name == "envoy":
        return ladder == REST
    return True


def ladder_cpu(step: StepResult) -> dict[str, float]:
    return {name: value for name, value in step.cpu.items() if relevant_process(step.ladder, name)}


def ratio_verdict(
    numerator: StepResult | None,
    denominator: StepResult | None,
    required: float,
    goal: float | None = None,
) -> tuple[float | None, str]:
    """(held-rate ratio, verdict) of a goal 'numerator >= required x denominator'."""
    if denominator is None:
        return None, "not measured: the baseline held no rate"
    if numerator is None:
        return 0.0, f"**NOT met** (no rate held; needs ≥ {required:g}×)"
    ratio = numerator.offered / denominator.offered
    if ratio < required:
        return ratio, f"**NOT met** (needs ≥ {required:g}×)"
    if goal is not None and ratio < goal:
        return ratio, f"**met** (≥ {required:g}×); the {goal:g}× goal **NOT met**"
    return ratio, "**met**" + (f", the {goal:g}× goal too" if goal is not None else "")


def _held_text(step: StepResult | None) -> str:
    return f"{step.offered:,}/s" if step is not None else "none held"


def _ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"**{ratio:.2f}×**"


def goal_rows(
    best: dict[str, StepResult | None],
    gateways: int,
    shared_port: bool,
    top_rate: int,
) -> list[str]:
    """The goals of issue 10 this bench measures: a markdown table, figure and verdict each."""
    lines = ["| Goal (issue 10) | Measured | Verdict |", "|---|---|---|"]
    if ECHO in best and UNARY in best:
        ratio, verdict = ratio_verdict(best[UNARY], best[ECHO], *UNARY_OVER_ECHO)
        capped = best[ECHO] is not None and best[ECHO].offered >= top_rate
        lines.append(
            "| Unary `PlaceOrder` held rate ≥ 0.5× a bare grpc.aio echo, same load generator, "
            f"same run (goal 0.8×) | unary {_held_text(best[UNARY])} ÷ echo "
            f"{_held_text(best[ECHO])} = {_ratio_text(ratio)}"
            + (" (the echo held the top rate offered: the ratio is at most this)" if capped else "")
            + f" | {verdict} |"
        )
    if REST in best and UNARY in best:
        ratio, verdict = ratio_verdict(best[REST], best[UNARY], REST_OVER_UNARY)
        lines.append(
            "| REST through Envoy: held rate ≥ 0.5× the unary gRPC rate | REST "
            f"{_held_text(best[REST])} ÷ unary {_held_text(best[UNARY])} = {_ratio_text(ratio)} "
            f"| {verdict} |"
        )
    if SCALE in best and UNARY in best:
        ratio = (
            best[SCALE].offered / best[UNARY].offered
            if best[SCALE] is not None and best[UNARY] is not None
            else None
        )
        ports = (
            "measured with the processes sharing one port (SO_REUSEPORT)"
            if shared_port
            else "measured, but on separate ports with the clients spread over them: sharing "
            "one port **NOT met** yet"
        )
        lines.append(
            f"| Scale-out: a measured table of 1 vs {gateways} gateway processes, CPU per "
            f"order per process | 1: {_held_text(best[UNARY])}, {gateways}: "
            f"{_held_text(best[SCALE])} ({_ratio_text(ratio)}); table below | {ports} |"
        )
    return lines


def ladders_of(steps: Iterable[StepResult]) -> list[str]:
    """The ladders measured, in TARGETS order ("" for steps of no target)."""
    present = {step.ladder for step in steps}
    return [ladder for ladder in ("", *TARGETS) if ladder in present]


def best_by_ladder(steps: list[StepResult], p99_ms: float) -> dict[str, StepResult | None]:
    return {
        ladder: highest_held([step for step in steps if step.ladder == ladder], p99_ms)
        for ladder in ladders_of(steps)
    }


def ladder_figures(measured: list[StepResult], p99_ms: float) -> dict[str, tuple[StepResult, bool]]:
    """Per ladder, the step its CPU figures are read from: its highest rate held (True), else,
    when it held none, its step with the highest achieved rate (False)."""
    figures: dict[str, tuple[StepResult, bool]] = {}
    for ladder in ladders_of(measured):
        mine = [step for step in measured if step.ladder == ladder]
        held = highest_held(mine, p99_ms)
        if held is not None:
            figures[ladder] = (held, True)
        elif mine:
            figures[ladder] = (max(mine, key=lambda step: step.achieved), False)
    return figures


def _figure_rate(step: StepResult, held: bool) -> str:
    if held:
        return f"{step.offered:,}"
    return f"none held (busiest step: {step.offered:,} offered, {step.achieved:,.0f} achieved)"


def scale_table(figures: dict[str, tuple[StepResult, bool]], gateways: int) -> list[str]:
    """1 vs N gateway processes at each one's highest held rate, CPU per order per process."""
    rows = [(count, figures.get(ladder)) for count, ladder in ((1, UNARY), (gateways, SCALE))]
    names = [
        column
        for column in CPU_COLUMNS
        if column not in ("bench", "echo", "envoy")
        and any(row and cpu_columns(ladder_cpu(row[0])).get(column) for _, row in rows)
    ]
    header = ["gateway processes", "held orders/s", "p99 ms"]
    header += [f"{name} ms" for name in names] + ["exchange ms", "cores used by the exchange"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for count, row in rows:
        if row is None:
            lines.append(f"| {count} | not measured |" + " - |" * (len(header) - 2))
            continue
        step, held = row
        per_order = cpu_per_order_ms(replace(step, cpu=ladder_cpu(step)))
        exchange = sum(
            value for name, value in per_order.items() if name not in ("clients", "bench")
        )
        cores = sum(
            value
            for name, value in cpu_columns(ladder_cpu(step)).items()
            if name not in ("clients", "bench", "machine")
        )
        lines.append(
            f"| {count} | {_figure_rate(step, held)} | {_ms(step.p99_ms)} | "
            + "".join(
                f"{per_order[name]:.3f} | " if name in per_order else "- | " for name in names
            )
            + f"{exchange:.3f} | {cores:.2f} |"
        )
    return lines


def cpu_per_call_table(figures: dict[str, tuple[StepResult, bool]], gateways: int) -> list[str]:
    """CPU ms per answered call, per process, at each ladder's highest held rate."""
    if not figures:
        return []
    per_call = {
        ladder: cpu_per_order_ms(replace(step, cpu=ladder_cpu(step)))
        for ladder, (step, _) in figures.items()
    }
    names = [
        column
        for column in CPU_COLUMNS
        if any(values.get(column, 0.0) >= 0.0005 for values in per_call.values())
    ]
    lines = [
        "| process | "
        + " | ".join(
            f"{ladder_title(ladder, gateways, short=True) if ladder else 'unary'} at "
            f"{step.offered:,}/s" + ("" if held else " (not held)")
            for ladder, (step, held) in figures.items()
        )
        + " |",
        "|---|" + "---:|" * len(figures),
    ]
    for name in names:
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{values[name]:.3f}" if name in values else "-" for values in per_call.values()
            )
            + " |"
        )
    lines.append(
        "| **server side** (all but clients and bench) | "
        + " | ".join(
            f"**{sum(v for n, v in values.items() if n not in ('clients', 'bench')):.3f}**"
            for values in per_call.values()
        )
        + " |"
    )
    return lines


def limit_analysis(step: StepResult, cpus: int) -> str:
    """A plain reading of the CPU figures of one step: who saturates, and the ceilings that the
    CPU cost per order implies."""
    grouped = cpu_columns(step.cpu)
    machine = grouped.pop("machine", 0.0)
    ours = sum(grouped.values())
    ranked = sorted(grouped.items(), key=lambda item: -item[1])
    busy = ", ".join(f"{name} {value:.2f}" for name, value in ranked if value >= 0.05)
    parts = [
        f"At {step.offered:,}/s offered ({step.achieved:,.0f}/s achieved) the processes used, in "
        f"cores: {busy}; together {ours:.2f} of the machine's {cpus}, and the machine as a whole "
        f"was {machine:.2f} busy ({max(machine - ours, 0):.2f} of it other work)."
    ]
    single = [
        name
        for name, value in ranked
        if value >= 0.85 and name not in ("kafka", "clients", "redis", "envoy")
    ]
    if single:
        parts.append(
            f"{' and '.join(single)} ran at about one full core: a single-threaded Python "
            "event loop at its limit."
        )
    client_cores = [value for name, value in step.cpu.items() if name.startswith("client-")]
    if client_cores and max(client_cores) >= 0.85:
        parts.append(
            f"A load-generator process ran at {max(client_cores):.2f} cores: the generator, not "
            "the server, may set this figure."
        )
    elif client_cores:
        parts.append(
            f"The load-generator processes used at most {max(client_cores):.2f} cores each: not "
            "the bottleneck."
        )
    if machine >= cpus * 0.9:
        parts.append(
            f"The machine was saturated ({machine:.2f} of {cpus} cores): every process, the "
            "load generator included, competes for the same cores."
        )
    per_order = cpu_per_order_ms(step)
    if per_order:
        exchange = {name: value for name, value in per_order.items() if name != "bench"}
        total = sum(exchange.values())
        server = total - exchange.get("clients", 0.0)
        costs = ", ".join(
            f"{name} {value:.2f}"
            for name, value in sorted(exchange.items(), key=lambda item: -item[1])
            if value >= 0.005
        )
        heaviest = max(
            (item for item in exchange.items() if item[0] not in ("clients", "kafka", "redis")),
            key=lambda item: item[1],
            default=None,
        )
        parts.append(
            f"CPU per answered call, in ms: {costs}; {total:.2f} ms in all ({server:.2f} ms "
            f"without the load generator). So {cpus} cores carry at most about "
            f"{cpus / total * 1000:,.0f} calls/s with the load generator on the same machine"
            + (f" and {cpus / server * 1000:,.0f}/s without it" if server > 0 else "")
            + (
                f"; one core for the busiest process, the {heaviest[0]}, carries at most "
                f"{1000 / heaviest[1]:,.0f}/s."
                if heaviest and heaviest[1] > 0
                else "."
            )
        )
    return " ".join(parts)


def step_table(measured: list[StepResult], p99_ms: float) -> list[str]:
    """The steps as a markdown table, then the messages of failed calls."""
    lines = [
        "| offered/s | achieved/s | calls | p50 ms | p99 ms | p99.9 ms | max ms | timeouts | "
        "errors | cancel too late | lag p99 ms | drain s | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in sorted(measured, key=lambda step: step.offered):
        errors = ", ".join(f"{name} {count}" for name, count in sorted(step.errors.items()))
        lines.append(
            f"| {step.offered:,} | {step.achieved:,.0f} | {step.sent:,} | {_ms(step.p50_ms)} | "
            f"{_ms(step.p99_ms)} | {_ms(step.p999_ms)} | {_ms(step.max_ms)} | {step.timeouts:,} | "
            f"{errors or 0} | {step.cancel_too_late:,} | {_ms(step.lag_p99_ms)} | "
            f"{step.drain_s:.1f} | {'yes' if step.held(p99_ms) else '**no**'}"
            f"{f' ({step.attempts} tries)' if step.attempts > 1 else ''} |"
        )
    failures = [step for step in sorted(measured, key=lambda s: s.offered) if step.messages]
    if failures:
        lines += ["", "Failed calls, by message (the most frequent per step):", ""]
        for step in failures:
            shown = "; ".join(f"`{text}` ×{count}" for text, count in step.messages.items())
            lines.append(f"- {step.offered:,}/s: {shown}")
    return lines


def render_section(
    *,
    command: str,
    started: datetime.datetime,
    loads: tuple[str, str],
    machine: dict[str, str],
    settings: dict[str, str],
    steps: list[StepResult],
    p99_ms: float,
    profiled: StepResult | None,
    profiles: dict[str, dict[str, str]],
    threads: dict[str, dict[str, float]],
    floor: dict[str, tuple[float, float]] | None = None,
    scenario: str = "",
    gateways: int = 2,
    shared_port: bool = False,
) -> str:
    cpus = os.cpu_count() or 1
    measured = [step for step in steps if not step.label]
    best = best_by_ladder(measured, p99_ms)
    top_rate = max((step.offered for step in measured), default=0)
    start_marker, end_marker = section_markers(scenario)
    present = set(best)
    title = "## End to end: unary PlaceOrder → gateway → Redis → engine → Kafka → answer"
    if scenario:
        title += f", with the `{scenario}` scenario's bots trading"
    else:
        extras = [
            text
            for ladder, text in (
                (ECHO, "against a bare gRPC echo"),
                (REST, "REST through Envoy"),
                (SCALE, f"1 vs {gateways} gateway processes"),
            )
            if ladder in present
        ]
        if extras:
            title += "; " + ", ".join(extras)
    servers = [
        text
        for ladder, text in (
            (REST, "Envoy in front of the gateway"),
            (ECHO, "a bare grpc.aio echo"),
        )
        if ladder in present
    ]
    from bench.run_all import section_head

    lines = [
        *section_head(start_marker, title, command, started, machine, loads),
        "| Setting | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in settings.items()),
        "",
        "**How it is measured.** The bench starts its own stack (Redis, a Kafka broker, engine, "
        "store, stream and gateway as real processes on free ports"
        + "".join(f"; {text}" for text in servers)
        + "). The load generator is separate processes, each one asyncio loop with as many "
        "calls in flight as the rate needs; each sends its share of the offered rate at fixed "
        "intervals whatever the answers (open loop), the same scheduler for every target. "
        "Latency runs from when a call was due to when its answer arrived: a PlaceOrder answer "
        "is the engine's result after Kafka acknowledged it (acks=all). *achieved* = answers / "
        "(time from the step's start to its last answer), so a backlog lowers it. A rate is "
        f"*held* when p99 ≤ {p99_ms:g} ms, achieved ≥ {HELD_ACHIEVED_SHARE:.0%} of offered and "
        f"errors + timeouts ≤ {MAX_FAILED_SHARE:.1%}; a ladder's figure is its highest rate "
        "held below every rate it did not hold. *lag* is how late the clients themselves sent "
        "(p99).",
        "",
    ]
    if scenario:
        unary = best.get(UNARY)
        lines += [
            f"**Unary `PlaceOrder` held with the `{scenario}` scenario's bots trading: "
            + (
                f"{unary.offered:,} orders/s** (achieved {unary.achieved:,.0f}/s, p50 "
                f"{_ms(unary.p50_ms)} ms, p99 {_ms(unary.p99_ms)} ms)."
                if unary
                else "no rate held**."
            ),
            "",
        ]
    else:
        lines += [*goal_rows(best, gateways, shared_port, top_rate), ""]
    for ladder in ladders_of(measured):
        mine = [step for step in measured if step.ladder == ladder]
        held = best[ladder]
        lines += [
            f"**{ladder_title(ladder, gateways) if ladder else 'Unary PlaceOrder'}**",
            "",
            *step_table(mine, p99_ms),
            "",
            (
                f"Highest rate held with p99 ≤ {p99_ms:g} ms: **{held.offered:,}/s** (achieved "
                f"{held.achieved:,.0f}/s, p50 {_ms(held.p50_ms)} ms, p99 {_ms(held.p99_ms)} ms)."
                if held
                else f"No rate was held with p99 ≤ {p99_ms:g} ms."
            ),
            "",
        ]
    figures = ladder_figures(measured, p99_ms)
    if SCALE in best:
        lines += [
            f"**Scale-out: 1 vs {gateways} gateway processes** (CPU ms per answered order per "
            "process at each one's highest held rate; *exchange* is every process but the load "
            "generator; the 1-gateway row is the unary ladder above, measured before the other "
            "gateways started):",
            "",
            *scale_table(figures, gateways),
            "",
        ]
    per_call = cpu_per_call_table(figures, gateways)
    if per_call:
        lines += [
            "**CPU per answered call, per process, in ms** (at each ladder's highest held rate, "
            "or its busiest step when it held none; processes that only idle during a ladder are "
            "left out of it):",
            "",
            *per_call,
            "",
        ]
    if floor:
        lines += [
            "**Latency floor** (after the steps, nothing else in flight; p50 / p99 ms): "
            + "; ".join(f"{name} {p50:.2f} / {p99:.2f}" for name, (p50, p99) in floor.items())
            + ".",
            "",
        ]
    present = [
        column
        for column in CPU_COLUMNS
        if any(cpu_columns(step.cpu).get(column) is not None for step in steps)
    ]
    lines += [
        "**CPU per process** (cores used during the step, from /proc/PID/stat utime+stime over "
        "the step's wall time, every thread; *machine* is /proc/stat for all CPUs, so *machine* "
        "minus the sum is other work on the machine, the kernel's loopback networking "
        "included):",
        "",
        "| ladder | offered/s | " + " | ".join(present) + " | sum | machine | other |",
        "|---|---:|" + "---:|" * (len(present) + 3),
    ]
    order = {ladder: number for number, ladder in enumerate(("", *TARGETS))}
    for step in sorted(steps, key=lambda s: (bool(s.label), order[s.ladder], s.offered)):
        grouped = cpu_columns(step.cpu)
        machine_busy = grouped.pop("machine", math.nan)
        values = [grouped.get(column, 0.0) for column in present]
        name = f"{step.offered:,}" + (f" ({step.label})" if step.label else "")
        lines.append(
            f"| {ladder_title(step.ladder, gateways, short=True) if step.ladder else '-'} | "
            f"{name} | "
            + " | ".join(f"{value:.2f}" for value in values)
            + f" | {sum(grouped.values()):.2f} | {machine_busy:.2f} | "
            f"{max(machine_busy - sum(grouped.values()), 0.0):.2f} |"
        )
    if profiled is not None:
        lines += [
            "",
            f"**Where the time goes** (one extra unary step at {profiled.offered:,}/s with the "
            "engine and the gateway under pyinstrument: 1 ms sampling of the event-loop thread, "
            "wall time, so waiting in `epoll.poll` is the loop's idle time; the call tree below "
            "asyncio.run, then the top functions by own time. Time in C code without a Python "
            "frame, such as grpc's Cython callbacks and the C `Task` steps, shows as the own "
            "time of the loop's `Handle._run`/`base_events.py`. That step measured "
            f"p50 {_ms(profiled.p50_ms)} ms, p99 {_ms(profiled.p99_ms)} ms, achieved "
            f"{profiled.achieved:,.0f}/s: the profiler slows both processes, so compare the "
            "rows, not with the table above):",
        ]
        for name, texts in profiles.items():
            flat = texts.get("flat", "")
            header, rows = flat_profile_rows(flat, 8)
            idle = idle_share(flat)
            cpu = profiled.cpu.get(name)
            lines += [
                "",
                f"*{name}*"
                + (f" ({cpu:.2f} cores over the step" if cpu is not None else "")
                + (f"; idle in epoll {idle:.0%} of the samples" if idle is not None else "")
                + (")" if cpu is not None else ""),
                "",
                "```",
                header,
                *tree_rows(texts.get("tree", "")),
                "",
                "by own time:",
                *rows,
                "```",
            ]
        if threads:
            lines += ["", "CPU by thread over the profiled step (cores):", ""]
            for name, by_thread in threads.items():
                ranked = sorted(by_thread.items(), key=lambda item: -item[1])
                shown = ", ".join(f"`{thread}` {value:.2f}" for thread, value in ranked[:5])
                lines.append(f"- {name}: {shown}")
    others = [
        step.cpu["machine"] - sum(value for name, value in step.cpu.items() if name != "machine")
        for step in steps
        if "machine" in step.cpu
    ]
    if others and max(others) >= 0.3:
        lines += [
            "",
            f"**Other work on the machine** took up to {max(others):.2f} of its {cpus} cores "
            "during these steps (the *other* column): the latencies above are not this code's "
            "alone, the CPU per order figures barely depend on it.",
        ]
    readings = []
    for ladder in ladders_of(measured):
        busiest = max(
            (step for step in measured if step.ladder == ladder),
            key=lambda step: step.achieved,
            default=None,
        )
        if busiest is not None and busiest.cpu:
            reading = limit_analysis(replace(busiest, cpu=ladder_cpu(busiest)), cpus)
            name = ladder_title(ladder, gateways, short=True) if ladder else "unary"
            readings.append(f"- *{name}*: {reading}")
    if readings:
        lines += [
            "",
            "**What limits the rate** (read, for each ladder, from its step with the highest "
            "achieved rate, where fixed costs per engine round are shared by the most calls):",
            "",
            *readings,
        ]
    lines.append(end_marker)
    return "\n".join(lines) + "\n"


# ---- main ------------------------------------------------------------------------------------


def run_step(
    load: LoadGenerator,
    meter: CpuMeter,
    rate: int,
    seconds: float,
    label: str = "",
    target: str = "",
) -> StepResult:
    start = time.monotonic() + 0.5
    load.start_step(rate, seconds, start, target)
    time.sleep(max(0.0, start - time.monotonic()))
    before = meter.sample()
    records = load.results()
    after = meter.sample()
    step = summarize(rate, seconds, records)
    step.cpu = meter.cores(before, after)
    step.label = label
    step.ladder = target
    return step


def measure_rate(
    load: LoadGenerator,
    meter: CpuMeter,
    rate: int,
    seconds: float,
    p99_ms: float,
    retries: int,
    note: str = "",
    target: str = "",
) -> StepResult:
    """One step at `rate`; a step not held is measured again up to `retries` times and the
    better one counts (other work on a shared machine can spoil one step)."""
    step = run_step(load, meter, rate, seconds, target=target)
    log(describe(step, p99_ms, note))
    for attempt in range(2, retries + 2):
        if step.held(p99_ms):
            break
        again = run_step(load, meter, rate, seconds, target=target)
        log(describe(again, p99_ms, f" (try {attempt})"))
        step = better(step, again, p99_ms)
        step.attempts = attempt
    return step


def step_ladders(
    rates: Sequence[int],
    ladders: Sequence[str],
    measure: Callable[[str, int, str], StepResult],
    p99_ms: float,
    stop_p99_ms: float,
    refine: int,
) -> None:
    """Several ladders stepped together, so that noise on the machine hits all of them: at each
    rate every ladder still going measures one step, in an order reversed from one rate to the
    next; a ladder stops once a rate is no longer carried. Then `refine` rounds, each one
    bisection step per ladder between its highest rate held and its lowest not held."""
    held: dict[str, int | None] = dict.fromkeys(ladders)
    failed: dict[str, int | None] = dict.fromkeys(ladders)
    going = list(ladders)

    def record(ladder: str, rate: int, step: StepResult) -> None:
        if step.held(p99_ms):
            held[ladder] = max(rate, held[ladder] or 0)
        elif failed[ladder] is None or rate < failed[ladder]:
            failed[ladder] = rate

    for number, rate in enumerate(rates):
        for ladder in going if number % 2 == 0 else going[::-1]:
            step = measure(ladder, rate, "")
            record(ladder, rate, step)
            if not step.keep_stepping(stop_p99_ms):
                going = [other for other in going if other != ladder]
        if not going:
            break
    for number in range(refine):
        for ladder in ladders if number % 2 == 0 else ladders[::-1]:
            low, high = held[ladder], failed[ladder]
            rate = bisect_rate(low, high) if low is not None and high is not None else None
            if rate is not None:
                record(ladder, rate, measure(ladder, rate, " (bisecting)"))


def step_rates(
    rates: Sequence[int],
    measure: Callable[[int, str], StepResult],
    p99_ms: float,
    stop_p99_ms: float,
    refine: int,
) -> None:
    """Up through `rates` until one is no longer carried, then `refine` bisection steps
    between the highest rate held and the lowest not held."""
    step_ladders(
        rates,
        [""],
        lambda _ladder, rate, note: measure(rate, note),
        p99_ms,
        stop_p99_ms,
        refine,
    )


def describe(step: StepResult, p99_ms: float, note: str = "") -> str:
    failed = step.timeouts + step.error_count
    return (
        (f"{step.ladder:>8} " if step.ladder else "")
        + f"{step.offered:>6,}/s offered{' (' + step.label + ')' if step.label else ''}: "
        f"achieved {step.achieved:,.0f}/s, p50 {_ms(step.p50_ms)} ms, p99 {_ms(step.p99_ms)} ms, "
        f"p99.9 {_ms(step.p999_ms)} ms, failed {failed}, lag p99 {_ms(step.lag_p99_ms)} ms, "
        f"cpu "
        + " ".join(f"{name}={value:.2f}" for name, value in sorted(cpu_columns(step.cpu).items()))
        + ("" if step.label else f" -> {'held' if step.held(p99_ms) else 'NOT held'}")
        + note
        + "".join(f"\n    {count} x {text}" for text, count in step.messages.items())
    )


WARMUP_SECONDS = 10.0
"""Unmeasured load before a ladder's first step: a fresh stack's first seconds (connections,
caches, Kafka's JIT) had a p99 of 70-95 ms at 100/s, failing the lowest rate of a ladder that
then held 250/s, and a rate held above a failed one does not count."""


def add_step_arguments(
    parser: argparse.ArgumentParser,
    unit: str,
    clients: int,
    users_help: str,
    rates: tuple[int, ...] = DEFAULT_RATES,
    users: int = 8,
) -> None:
    """The options every stepping benchmark takes (this one and bench.session_bench)."""
    parser.add_argument(
        "--rates",
        default=",".join(str(rate) for rate in rates),
        help=f"offered rates to step through, {unit}/s",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per step (10)")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=WARMUP_SECONDS,
        help=f"unmeasured load at the lowest rate before each ladder ({WARMUP_SECONDS:g})",
    )
    parser.add_argument(
        "--clients", type=int, default=clients, help=f"load-generator processes ({clients})"
    )
    parser.add_argument("--users", type=int, default=users, help=users_help)
    parser.add_argument("--p99-ms", type=float, default=20.0, help="p99 bound for 'held' (20)")
    parser.add_argument(
        "--stop-p99-ms", type=float, default=100.0, help="stop stepping above this p99 (100)"
    )
    parser.add_argument("--refine", type=int, default=2, help="bisection steps afterwards (2)")
    parser.add_argument(
        "--retries", type=int, default=1, help="measure a rate not held again, keep the better"
    )


def parse_parts(text: str, scenario: str) -> list[str]:
    """The targets to measure, in TARGETS order: all of them by default, only the unary one
    with a scenario playing (issue 10 takes the ratios with the simulator paused)."""
    if not text:
        return [UNARY] if scenario else list(TARGETS)
    parts = {part.strip() for part in text.split(",") if part.strip()}
    unknown = parts - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}: valid values are {', '.join(TARGETS)}")
    return [target for target in TARGETS if target in parts]


def main(argv: list[str] | None = None) -> int:
    from bench.run_all import load_average, machine, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "calls", clients=2, users_help="participants (64)", users=64)
    parser.add_argument(
        "--parts",
        default="",
        help=f"targets to measure, of {','.join(TARGETS)} (all; with --scenario only unary)",
    )
    parser.add_argument(
        "--channels", type=int, default=1, help="gRPC channels per server per client (1)"
    )
    parser.add_argument(
        "--rest-connections",
        type=int,
        default=16,
        help="keep-alive HTTP connections each client opens ahead (16; more on demand)",
    )
    parser.add_argument("--cancel-share", type=float, default=0.0, help="share of cancels (0)")
    parser.add_argument("--profile-rate", type=int, help="rate of the profiled unary step")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled step")
    parser.add_argument(
        "--gateways", type=int, default=2, help="gateway processes of the scale-out ladder (2)"
    )
    parser.add_argument(
        "--gateway-port",
        choices=("auto", "shared", "separate"),
        default="auto",
        help="the added gateways on the first one's port (SO_REUSEPORT) or ports of their own; "
        "auto: shared if they can bind it",
    )
    parser.add_argument("--engine-batch-size", type=int, help="MOCKEX_ENGINE_BATCH_SIZE")
    parser.add_argument(
        "--without", default="", help="services not to start: store,stream (not on the path)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the services (repeatable), e.g. MOCKEX_ENGINE_BATCH_SIZE=100,"
        " or MOCKEX_RATE_LIMIT_PER_SECOND=0",
    )
    parser.add_argument(
        "--scenario",
        default="",
        help="data_svc plays this scenario during the run (its own section of the file)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCHMARKS, help="markdown file to write")
    parser.add_argument("--no-write", action="store_true", help="do not write the markdown")
    parser.add_argument("--json", type=Path, help="also write the step results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    rates = parse_rates(args.rates)
    try:
        parts = parse_parts(args.parts, args.scenario)
    except ValueError as exc:
        parser.error(str(exc))
    if args.gateways < 2:
        parts = [part for part in parts if part != SCALE]
    without = tuple(name for name in args.without.split(",") if name)
    extra_env = tuple(tuple(item.split("=", 1)) for item in args.env)
    if any(len(item) != 2 for item in extra_env):
        parser.error("--env takes NAME=VALUE")
    if set(without) - {"store", "stream"}:
        parser.error("--without takes store and/or stream")

    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    if executable.startswith(".."):
        executable = "python"
    command = " ".join(
        [executable, "-m", "bench.e2e_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    options = StackOptions(
        engine_batch_size=args.engine_batch_size,
        without=without,
        extra_env=extra_env,
        scenario=args.scenario,
        edge=REST in parts,
        echo=ECHO in parts,
        gateway_group=args.gateways if SCALE in parts else 1,
        gateway_port=args.gateway_port,
    )
    data_dir = Path(tempfile.mkdtemp(prefix="mockex-e2e-"))
    bench = BenchStack(data_dir, options)
    load: LoadGenerator | None = None
    steps: list[StepResult] = []
    profiled: StepResult | None = None
    profiles: dict[str, str] = {}
    threads: dict[str, dict[str, float]] = {}
    floor: dict[str, tuple[float, float]] = {}
    edge_counts: tuple[int, int] | None = None
    mix = OrderMix(cancel_share=args.cancel_share)
    began = time.monotonic()
    try:
        bench.start()
        stack = bench.stack
        api_keys = asyncio.run(
            prepare_exchange(f"127.0.0.1:{stack.ports.gateway}", stack.admin_key, args.users)
        )
        configs = [
            ClientConfig(
                index=index,
                clients=args.clients,
                address=f"127.0.0.1:{stack.ports.gateway}",
                api_keys=tuple(api_keys),
                symbol=SYMBOL,
                seed=args.seed * 1000 + index,
                channels=args.channels,
                mix=mix,
                rest_connections=args.rest_connections,
            )
            for index in range(args.clients)
        ]
        log(f"starting {args.clients} load-generator processes")
        load = LoadGenerator(configs)

        def addresses(target: str) -> list[str]:
            if target == ECHO:
                return [f"127.0.0.1:{bench.echo_port}"]
            if target == REST:
                return [f"127.0.0.1:{stack.ports.edge}"]
            if target == SCALE:
                # Sharing one port, the kernel spreads connections (not calls) over the
                # processes: several per process even it out.
                spread = SHARED_PORT_CONNECTIONS if bench.shared_port else 1
                return [f"127.0.0.1:{port}" for port in bench.gateway_ports] * spread
            return [f"127.0.0.1:{stack.ports.gateway}"]

        meter = CpuMeter({**bench.pids, **load.pids, "bench": os.getpid()})

        def measure(target: str, rate: int, note: str) -> StepResult:
            step = measure_rate(
                load, meter, rate, args.seconds, args.p99_ms, args.retries, note, target
            )
            steps.append(step)
            return step

        first = [part for part in parts if part != SCALE]
        for target in first:
            load.prepare(target, addresses(target))
            log(f"warm-up {target}: {args.warmup_seconds:g} s at the lowest rate")
            run_step(load, meter, rates[0], args.warmup_seconds, target=target)
        if first:
            step_ladders(rates, first, measure, args.p99_ms, args.stop_p99_ms, args.refine)

        if REST in parts:
            edge_counts = read_envoy_downstream(stack.ports.edge_admin)
            if edge_counts:
                log(f"Envoy: {edge_counts[0]:,} connections for {edge_counts[1]:,} requests")
        if UNARY in parts and not args.no_profile:
            # The busiest rate that was still carried: the hot paths show best there.
            carried = [
                step.offered
                for step in steps
                if step.ladder == UNARY and step.achieved >= 0.9 * step.offered
            ]
            rate = args.profile_rate or max(carried, default=rates[0])
            log(f"profiled step at {rate:,}/s (engine and gateway under pyinstrument)")
            thread_pids = {name: bench.pids[name] for name in bench.wrapped}
            threads_before = {name: thread_ticks(pid) for name, pid in thread_pids.items()}
            bench.profile(True)
            seconds = min(args.seconds, 8.0)
            profile_began = time.monotonic()
            profiled = run_step(load, meter, rate, seconds, label="profiled", target=UNARY)
            wall = time.monotonic() - profile_began
            bench.profile(False)
            hz = os.sysconf("SC_CLK_TCK")
            for name, pid in thread_pids.items():
                after = thread_ticks(pid)
                threads[name] = {
                    thread: (ticks - threads_before[name].get(thread, 0)) / hz / wall
                    for thread, ticks in after.items()
                }
            steps.append(profiled)
            log(describe(profiled, args.p99_ms))
            profiles = bench.profiles()
        if UNARY in parts:
            log("latency floor: sequential orders, Redis and Kafka round trips")
            try:
                floor = asyncio.run(
                    latency_floor(
                        f"127.0.0.1:{stack.ports.gateway}",
                        api_keys[0],
                        stack.redis_url,
                        stack.kafka_bootstrap,
                    )
                )
            except Exception as exc:  # the steps are worth writing without it
                log(f"latency floor failed: {exc!r}")
            for name, (p50, p99) in floor.items():
                log(f"  {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")

        if SCALE in parts:
            for _ in range(args.gateways - 1):
                name = bench.add_gateway()
                how = "sharing" if bench.sharing else "on a port of its own,"
                log(f"started {name}, {how} port {bench.gateway_ports[-1]}")
            meter = CpuMeter({**bench.pids, **load.pids, "bench": os.getpid()})
            load.prepare(SCALE, addresses(SCALE))
            log(f"warm-up {SCALE}: {args.warmup_seconds:g} s at the lowest rate")
            run_step(load, meter, rates[0], args.warmup_seconds, target=SCALE)
            step_ladders(rates, [SCALE], measure, args.p99_ms, args.stop_p99_ms, args.refine)
    finally:
        if load is not None:
            load.close()
        bench.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            log(f"kept {data_dir}")
    log(f"measured in {time.monotonic() - began:,.0f} s")

    best = best_by_ladder([step for step in steps if not step.label], args.p99_ms)
    services = ["engine", *(n for n in ("store", "stream") if n not in without), "1 gateway"]
    if SCALE in parts:
        services[-1] = f"1 gateway, then {args.gateways} for the scale-out ladder (" + (
            f"sharing one port, SO_REUSEPORT; each client opens {SHARED_PORT_CONNECTIONS}× "
            "as many channels to it, spread over the processes by the kernel)"
            if bench.shared_port
            else "separate ports, each client's calls alternating between them)"
        )
    if REST in parts:
        services.append("Envoy (envoy/envoy.yaml as `make run` renders it, 2 workers)")
    if ECHO in parts:
        services.append("the bare grpc.aio echo server (`bench.echo_server`)")
    services.append(
        f"data_svc playing `{args.scenario}` (its bots trade throughout)"
        if args.scenario
        else "no simulator (data_svc not started)"
    )
    generator = (
        f"{args.clients} processes (the same ones for every target), {args.users} users, open "
        f"loop; gRPC: {args.channels} channel(s) per server address per process"
    )
    if REST in parts:
        generator += (
            f"; REST: keep-alive HTTP/1.1 (`bench.rest_client`, {args.rest_connections} "
            "connections per process opened ahead, more while all are busy)"
        )
    if edge_counts:
        generator += (
            f"; Envoy accepted {edge_counts[0]:,} connections for {edge_counts[1]:,} requests"
        )
    first = [part for part in parts if part != SCALE]
    order = (
        f"at each rate one step of every ladder still going ({', '.join(first)}), the order "
        "reversed from one rate to the next, so noise hits all of them; bisection rounds the "
        "same way"
        if len(first) > 1
        else "up through the rates, then bisection"
    )
    if SCALE in parts:
        order += "; the scale-out ladder last, once the other gateways run"
    settings = {
        "Load generator": generator,
        "Order mix": mix.describe(),
        "Step": f"{args.seconds:g} s per rate (+ {args.warmup_seconds:g} s warm-up per target); "
        "timeout "
        f"{configs[0].timeout_s:g} s; a rate not held is measured again "
        f"{args.retries} time(s), the better counts; {args.refine} bisection round(s)",
        "Order of the steps": order,
        "Engine": f"MOCKEX_ENGINE_BATCH_SIZE={args.engine_batch_size or 'default (500)'}; Kafka "
        "acks=all, linger 0 ms, one partition",
        "Services": ", ".join(services),
    }
    if extra_env:
        settings["Extra environment"] = ", ".join(f"`{name}={value}`" for name, value in extra_env)
    section = render_section(
        command=command,
        started=started,
        loads=(load_at_start, load_average()),
        machine=machine(),
        settings=settings,
        steps=steps,
        p99_ms=args.p99_ms,
        profiled=profiled,
        profiles=profiles,
        threads=threads,
        floor=floor,
        scenario=args.scenario,
        gateways=args.gateways,
        shared_port=bench.shared_port,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "steps": [asdict(step) for step in steps],
                    "best": {
                        ladder: step.offered if step else None for ladder, step in best.items()
                    },
                    "profiles": profiles,
                    "threads": threads,
                    "floor": floor,
                },
                indent=1,
            )
        )
    if not args.no_write:
        write_section(section, args.out, *section_markers(args.scenario))
        log(f"wrote {args.out}")
    for ladder, step in best.items():
        log(
            f"{ladder}: highest rate held with p99 <= {args.p99_ms:g} ms: "
            + (f"{step.offered:,}/s" if step else "none")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
