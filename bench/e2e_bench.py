"""End-to-end benchmark: open-loop gRPC clients placing orders through the whole chain.

    python -m bench.e2e_bench [--rates 250,500,1000,2000,4000] [--seconds 10] [--clients 2]

Starts its own exchange (ExchangeStack on free ports, data in a temporary directory, its own Redis
and Kafka broker; the engine and the gateway run under `bench.profiled_service` so that one step
can be profiled), lists a symbol, creates users with cash and positions, then steps through the
offered rates. The load comes from `--clients` separate processes, each with its own grpc.aio
event loop: each schedules its share of the offered rate at fixed intervals (OPEN loop: a send is
never held back by a slow answer) and records, per call, when it was due, when it was sent, when
the answer came and its status. Latency is counted from the due time, so a client that falls
behind shows as latency instead of silently lowering the load (no coordinated omission).

Per step: achieved acks/s, ack latency p50/p99/p99.9, errors and timeouts, and the CPU each process
used (from /proc/PID/stat before and after). A step is *held* when p99 <= --p99-ms (20), the
achieved rate is >= 95% of the offered one and errors + timeouts are <= 0.1%. Stepping stops once
p99 passes --stop-p99-ms or the achieved rate falls below 80% of the offered one; a rate not
held is measured once more (--retries) and the better of the two counts, since other work on a
shared machine can spoil one step; a few bisection steps then narrow the highest rate held. One
more step, at the highest rate still carried (achieved >= 90% of offered), runs with the engine
and the gateway under pyinstrument. Last, a latency floor: orders one at a time, and Redis and
Kafka round trips on their own. The results go to BENCHMARKS.md between the e2e-bench markers
(the rest of the file is left alone); progress goes to stderr.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"
START_MARKER = "<!-- e2e-bench:start -->"
END_MARKER = "<!-- e2e-bench:end -->"
DEFAULT_RATES = (100, 250, 500, 1000, 2000, 4000, 8000, 10000)
GOAL_RATE = 10_000
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
    from [-passive_ticks, cross_ticks]; k > 0 crosses the opposite side's resting orders."""

    cancel_share: float = 0.10
    ioc_share: float = 0.10
    cross_ticks: int = 2
    passive_ticks: int = 6
    max_quantity: int = 100


@dataclass(frozen=True)
class OrderSpec:
    kind: int
    user: int
    side: str = ""
    price_ticks: int = 0
    quantity: int = 0
    tif: str = ""
    order_id: str = ""


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
    api_keys: tuple[str, ...]
    symbol: str
    seed: int
    channels: int = 1
    timeout_s: float = 10.0
    mix: OrderMix = OrderMix()


def client_process(config: ClientConfig, conn) -> None:
    """Entry point of a load-generator process: runs steps that the parent sends on `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_client_main(config, conn))


async def _client_main(config: ClientConfig, conn) -> None:
    import grpc

    from exchange.v1 import orders_pb2, orders_pb2_grpc, types_pb2

    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(config.address, options=options) for _ in range(config.channels)
    ]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 30)
    stubs = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
    metadata = [(("x-api-key", key),) for key in config.api_keys]
    flow = OrderFlow(config.seed, len(config.api_keys), config.mix)
    resting: collections.deque = collections.deque(maxlen=20_000)
    tick = TICK_SIZE
    side_values = {"BUY": types_pb2.BUY, "SELL": types_pb2.SELL}
    tif_values = {"GFD": types_pb2.GFD, "IOC": types_pb2.IOC}
    still_resting = (types_pb2.NEW, types_pb2.PARTIALLY_FILLED)
    conn.send("ready")

    async def call(i: int, records: ClientRecords) -> None:
        spec = flow.next(resting)
        stub = stubs[i % len(stubs)]
        kind, status = spec.kind, STATUS_OK
        records.sent[i] = time.monotonic()
        try:
            if kind == PLACE:
                request = orders_pb2.PlaceOrderRequest(
                    symbol=config.symbol,
                    side=side_values[spec.side],
                    type=types_pb2.LIMIT,
                    time_in_force=tif_values[spec.tif],
                    quantity=spec.quantity,
                    price=round(spec.price_ticks * tick, 2),
                )
                answer = await stub.PlaceOrder(
                    request, metadata=metadata[spec.user], timeout=config.timeout_s
                )
                if answer.order.status in still_resting:
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
                message = f"{exc.code().name} {KIND_NAMES[kind]}: {(exc.details() or '')[:160]}"
                records.messages[message] = records.messages.get(message, 0) + 1
        except Exception as exc:
            status = STATUS_CLIENT_ERROR
            message = f"CLIENT_EXCEPTION {KIND_NAMES[kind]}: {exc!r:.160}"
            records.messages[message] = records.messages.get(message, 0) + 1
        records.acked[i] = time.monotonic()
        records.status[i] = status
        records.kind[i] = kind

    await run_client_steps(config, conn, call)
    for channel in channels:
        await channel.close()


async def run_client_steps(
    config: ClientConfig, conn, call: Callable[[int, ClientRecords], Awaitable[None]]
) -> None:
    """The steps the parent sends on `conn`, until it sends None: `call(i, records)` for each
    of this client's due times, started when due whatever is still in flight (open loop), then
    the records back to the parent."""
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command is None:
            break
        rate, seconds, start = command
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
                task = loop.create_task(call(i, records))
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
        for conn in self.connections:
            if not conn.poll(60) or conn.recv() != "ready":
                raise RuntimeError("a load-generator process did not connect in 60 s")

    @property
    def pids(self) -> dict[str, int]:
        return {f"client-{i}": process.pid for i, process in enumerate(self.processes)}

    def start_step(self, rate: int, seconds: float, start: float) -> None:
        for conn in self.connections:
            conn.send((rate, seconds, start))

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
    engine_batch_size: int | None = None
    without: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    scenario: str = ""
    """data_svc plays this scenario while the load runs ("": no simulator)."""


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
        self.wrapped: list[str] = []

    def _start_wrapped(
        self, name: str, module: str, port: int, env: dict[str, str], profiled: bool = True
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
        for number in range(self.options.gateways):
            name = "gateway" if number == 0 else f"gateway{number + 1}"
            port = stack.ports.gateway if number == 0 else processes.free_port()
            self._start_wrapped(
                name,
                "gateway_svc",
                port,
                {
                    "MOCKEX_GATEWAY_GRPC_ADDRESS": f"0.0.0.0:{port}",
                    "MOCKEX_GATEWAY_ID": f"bench-{name}-{secrets.token_hex(3)}",
                },
            )
            self.gateway_ports.append(port)
        if self.options.scenario:
            self._start_scenario()

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
        return {name: process.pid for name, process in self.stack.processes.items()}

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
        if value >= 0.85 and name not in ("kafka", "clients", "redis")
    ]
    if single:
        parts.append(
            f"{' and '.join(single)} ran at about one full core: a single-threaded Python "
            "event loop at its limit."
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
            f"CPU per answered order, in ms: {costs}; {total:.2f} ms in all ({server:.2f} ms "
            f"without the load generator). So {cpus} cores carry at most about "
            f"{cpus / total * 1000:,.0f} orders/s with the load generator on the same machine "
            f"and {cpus / server * 1000:,.0f}/s without it"
            + (
                f"; one core for the busiest service, the {heaviest[0]}, carries at most "
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
    best: StepResult | None,
    profiled: StepResult | None,
    profiles: dict[str, dict[str, str]],
    threads: dict[str, dict[str, float]],
    floor: dict[str, tuple[float, float]] | None = None,
    scenario: str = "",
) -> str:
    cpus = os.cpu_count() or 1
    measured = [step for step in steps if not step.label]
    start_marker, end_marker = section_markers(scenario)
    title = "## End to end: gRPC clients → gateway → Redis → engine → Kafka → answer"
    if scenario:
        title += f", with the `{scenario}` scenario's bots trading"
    from bench.run_all import section_head

    lines = [
        *section_head(start_marker, title, command, started, machine, loads),
        "| Setting | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in settings.items()),
        "",
        "**How it is measured.** The bench starts its own stack (Redis, a Kafka broker, engine, "
        "store, stream and gateway as real processes on free ports). The load generator is "
        "separate processes, each a grpc.aio client with as many calls in flight as the rate "
        "needs; each sends its share of the offered rate at fixed intervals whatever the answers "
        "(open loop). Latency runs from when a call was due to when its answer arrived: the "
        "PlaceOrder/CancelOrder answer is the engine's result after Kafka acknowledged it "
        "(acks=all). *achieved* = answers (OK, or a cancel refused as too late) / (time "
        "from the step's start to its last answer), so a backlog lowers it. A rate is *held* "
        "when p99 ≤ "
        f"{p99_ms:g} ms, achieved ≥ {HELD_ACHIEVED_SHARE:.0%} of offered and errors + timeouts "
        f"≤ {MAX_FAILED_SHARE:.1%}. *lag* is how late the clients themselves sent (p99).",
        "",
    ]
    lines += step_table(measured, p99_ms)
    if floor:
        lines += [
            "",
            "**Latency floor** (after the steps, nothing else in flight; p50 / p99 ms): "
            + "; ".join(f"{name} {p50:.2f} / {p99:.2f}" for name, (p50, p99) in floor.items())
            + ".",
        ]
    if best is not None:
        verdict = "met" if best.offered >= GOAL_RATE else "NOT met"
        lines += [
            "",
            f"**Highest rate held with p99 ≤ {p99_ms:g} ms: {best.offered:,} orders/s** "
            f"(achieved {best.achieved:,.0f}/s, p50 {_ms(best.p50_ms)} ms, p99 "
            f"{_ms(best.p99_ms)} ms). Goal ({GOAL_RATE:,}/s with p99 ≤ 20 ms): **{verdict}**.",
        ]
    else:
        lines += ["", f"**No rate was held with p99 ≤ {p99_ms:g} ms.**"]
    present = [
        column
        for column in CPU_COLUMNS
        if any(cpu_columns(step.cpu).get(column) is not None for step in steps)
    ]
    lines += [
        "",
        "**CPU per process** (cores used during the step, from /proc/PID/stat utime+stime over "
        "the step's wall time, every thread; *machine* is /proc/stat for all CPUs, so *machine* "
        "minus the sum is other work on the machine, the kernel's loopback networking "
        "included):",
        "",
        "| offered/s | " + " | ".join(present) + " | sum | machine | other |",
        "|---:|" + "---:|" * (len(present) + 3),
    ]
    for step in sorted(steps, key=lambda step: (bool(step.label), step.offered)):
        grouped = cpu_columns(step.cpu)
        machine_busy = grouped.pop("machine", math.nan)
        values = [grouped.get(column, 0.0) for column in present]
        name = f"{step.offered:,}" + (f" ({step.label})" if step.label else "")
        lines.append(
            f"| {name} | "
            + " | ".join(f"{value:.2f}" for value in values)
            + f" | {sum(grouped.values()):.2f} | {machine_busy:.2f} | "
            f"{max(machine_busy - sum(grouped.values()), 0.0):.2f} |"
        )
    if profiled is not None:
        lines += [
            "",
            f"**Where the time goes** (one extra step at {profiled.offered:,}/s with the engine "
            "and the gateway under pyinstrument: 1 ms sampling of the event-loop thread, wall "
            "time, so waiting in `epoll.poll` is the loop's idle time; the call tree below "
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
            "alone, the CPU per order figures below barely depend on it.",
        ]
    busiest = max(measured, key=lambda step: step.achieved, default=None)
    if busiest is not None and busiest.cpu:
        lines += [
            "",
            "**What limits the rate** (read from the step with the highest achieved rate, where "
            f"fixed costs per engine round are shared by the most orders): "
            f"{limit_analysis(busiest, cpus)}",
        ]
    lines.append(end_marker)
    return "\n".join(lines) + "\n"


# ---- main ------------------------------------------------------------------------------------


def run_step(
    load: LoadGenerator, meter: CpuMeter, rate: int, seconds: float, label: str = ""
) -> StepResult:
    start = time.monotonic() + 0.5
    load.start_step(rate, seconds, start)
    time.sleep(max(0.0, start - time.monotonic()))
    before = meter.sample()
    records = load.results()
    after = meter.sample()
    step = summarize(rate, seconds, records)
    step.cpu = meter.cores(before, after)
    step.label = label
    return step


def measure_rate(
    load: LoadGenerator,
    meter: CpuMeter,
    rate: int,
    seconds: float,
    p99_ms: float,
    retries: int,
    note: str = "",
) -> StepResult:
    """One step at `rate`; a step not held is measured again up to `retries` times and the
    better one counts (other work on a shared machine can spoil one step)."""
    step = run_step(load, meter, rate, seconds)
    log(describe(step, p99_ms, note))
    for attempt in range(2, retries + 2):
        if step.held(p99_ms):
            break
        again = run_step(load, meter, rate, seconds)
        log(describe(again, p99_ms, f" (try {attempt})"))
        step = better(step, again, p99_ms)
        step.attempts = attempt
    return step


def step_rates(
    rates: Sequence[int],
    measure: Callable[[int, str], StepResult],
    p99_ms: float,
    stop_p99_ms: float,
    refine: int,
) -> None:
    """Up through `rates` until one is no longer carried, then `refine` bisection steps
    between the highest rate held and the lowest not held."""
    held_rate: int | None = None
    failed_rate: int | None = None
    for rate in rates:
        step = measure(rate, "")
        if step.held(p99_ms):
            held_rate = rate
        elif failed_rate is None:
            failed_rate = rate
        if not step.keep_stepping(stop_p99_ms):
            break
    for _ in range(refine):
        if held_rate is None or failed_rate is None:
            break
        rate = bisect_rate(held_rate, failed_rate)
        if rate is None:
            break
        step = measure(rate, " (bisecting)")
        if step.held(p99_ms):
            held_rate = rate
        else:
            failed_rate = rate


def describe(step: StepResult, p99_ms: float, note: str = "") -> str:
    failed = step.timeouts + step.error_count
    return (
        f"{step.offered:>6,}/s offered{' (' + step.label + ')' if step.label else ''}: "
        f"achieved {step.achieved:,.0f}/s, p50 {_ms(step.p50_ms)} ms, p99 {_ms(step.p99_ms)} ms, "
        f"p99.9 {_ms(step.p999_ms)} ms, failed {failed}, lag p99 {_ms(step.lag_p99_ms)} ms, "
        f"cpu "
        + " ".join(f"{name}={value:.2f}" for name, value in sorted(cpu_columns(step.cpu).items()))
        + ("" if step.label else f" -> {'held' if step.held(p99_ms) else 'NOT held'}")
        + note
        + "".join(f"\n    {count} x {text}" for text, count in step.messages.items())
    )


def add_step_arguments(
    parser: argparse.ArgumentParser,
    unit: str,
    clients: int,
    users_help: str,
    rates: tuple[int, ...] = DEFAULT_RATES,
) -> None:
    """The options every stepping benchmark takes (this one and bench.session_bench)."""
    parser.add_argument(
        "--rates",
        default=",".join(str(rate) for rate in rates),
        help=f"offered rates to step through, {unit}/s",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per step (10)")
    parser.add_argument(
        "--clients", type=int, default=clients, help=f"load-generator processes ({clients})"
    )
    parser.add_argument("--users", type=int, default=8, help=users_help)
    parser.add_argument("--p99-ms", type=float, default=20.0, help="p99 bound for 'held' (20)")
    parser.add_argument(
        "--stop-p99-ms", type=float, default=100.0, help="stop stepping above this p99 (100)"
    )
    parser.add_argument("--refine", type=int, default=2, help="bisection steps afterwards (2)")
    parser.add_argument(
        "--retries", type=int, default=1, help="measure a rate not held again, keep the better"
    )


def main(argv: list[str] | None = None) -> int:
    from bench.run_all import load_average, machine, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "orders", clients=2, users_help="participants (8)")
    parser.add_argument("--channels", type=int, default=1, help="gRPC channels per client (1)")
    parser.add_argument("--cancel-share", type=float, default=0.10, help="share of cancels")
    parser.add_argument("--profile-rate", type=int, help="rate of the profiled step")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled step")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
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
        gateways=args.gateways,
        engine_batch_size=args.engine_batch_size,
        without=without,
        extra_env=extra_env,
        scenario=args.scenario,
    )
    data_dir = Path(tempfile.mkdtemp(prefix="mockex-e2e-"))
    bench = BenchStack(data_dir, options)
    load: LoadGenerator | None = None
    steps: list[StepResult] = []
    profiled: StepResult | None = None
    profiles: dict[str, str] = {}
    threads: dict[str, dict[str, float]] = {}
    floor: dict[str, tuple[float, float]] = {}
    try:
        bench.start()
        stack = bench.stack
        api_keys = asyncio.run(
            prepare_exchange(f"127.0.0.1:{stack.ports.gateway}", stack.admin_key, args.users)
        )
        mix = OrderMix(cancel_share=args.cancel_share)
        configs = [
            ClientConfig(
                index=index,
                clients=args.clients,
                address=f"127.0.0.1:{bench.gateway_ports[index % len(bench.gateway_ports)]}",
                api_keys=tuple(api_keys),
                symbol=SYMBOL,
                seed=args.seed * 1000 + index,
                channels=args.channels,
                mix=mix,
            )
            for index in range(args.clients)
        ]
        log(f"starting {args.clients} load-generator processes")
        load = LoadGenerator(configs)
        meter = CpuMeter({**bench.pids, **load.pids, "bench": os.getpid()})
        log("warm-up: 2 s at the lowest rate")
        run_step(load, meter, rates[0], 2.0)

        def measure(rate: int, note: str) -> StepResult:
            step = measure_rate(load, meter, rate, args.seconds, args.p99_ms, args.retries, note)
            steps.append(step)
            return step

        step_rates(rates, measure, args.p99_ms, args.stop_p99_ms, args.refine)

        if not args.no_profile:
            # The busiest rate that was still carried: the hot paths show best there.
            carried = [step.offered for step in steps if step.achieved >= 0.9 * step.offered]
            rate = args.profile_rate or max(carried, default=rates[0])
            log(f"profiled step at {rate:,}/s (engine and gateway under pyinstrument)")
            thread_pids = {name: bench.pids[name] for name in bench.wrapped}
            threads_before = {name: thread_ticks(pid) for name, pid in thread_pids.items()}
            bench.profile(True)
            seconds = min(args.seconds, 8.0)
            began = time.monotonic()
            profiled = run_step(load, meter, rate, seconds, label="profiled")
            wall = time.monotonic() - began
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
    finally:
        if load is not None:
            load.close()
        bench.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            log(f"kept {data_dir}")

    best = highest_held(steps, args.p99_ms)
    settings = {
        "Load generator": f"{args.clients} processes × {args.channels} gRPC channel(s), "
        f"{args.users} users, open loop",
        "Order mix": f"LIMIT around a fixed mid (buy at mid+k ticks, sell at mid−k, k in "
        f"[−{mix.passive_ticks}, {mix.cross_ticks}]: k > 0 crosses), {mix.ioc_share:.0%} IOC, "
        f"qty 1–{mix.max_quantity}; {mix.cancel_share:.0%} of the calls cancel a resting order",
        "Step": f"{args.seconds:g} s per rate (+ 2 s warm-up); timeout {configs[0].timeout_s:g} s",
        "Engine": f"MOCKEX_ENGINE_BATCH_SIZE={args.engine_batch_size or 'default (500)'}; Kafka "
        "acks=all, linger 0 ms, one partition",
        "Services": ", ".join(
            ["engine", *(n for n in ("store", "stream") if n not in without)]
            + [f"{args.gateways} gateway(s)"]
            + (
                [f"data_svc playing `{args.scenario}` (its bots trade throughout)"]
                if args.scenario
                else []
            )
        ),
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
        best=best,
        profiled=profiled,
        profiles=profiles,
        threads=threads,
        floor=floor,
        scenario=args.scenario,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "steps": [asdict(step) for step in steps],
                    "best": best.offered if best else None,
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
    log(
        f"highest rate held with p99 <= {args.p99_ms:g} ms: "
        + (f"{best.offered:,}/s" if best else "none")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
