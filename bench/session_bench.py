"""Order-session benchmark: bots placing and cancelling over OrderSession streams, open loop.

    python -m bench.session_bench [--rates 250,500,1000,2000] [--seconds 10] [--clients 4]

The same stack, order flow, steps and verdicts as `bench.e2e_bench` (its BenchStack, OrderFlow,
CpuMeter, step logic and table), but each of the `--users` participants holds one OrderSession
stream and sends every order and cancel over it; the users are shared out among `--clients`
load-generator processes. Each client sends its share of the offered rate at fixed intervals
whatever the answers (open loop); a request's latency runs from when it was due to when its
answer (matched by request_id) arrived. The results go to BENCHMARKS.md between the
session-bench markers (the rest of the file is left alone); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import itertools
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench.e2e_bench import (
    BENCHMARKS,
    KIND_NAMES,
    PLACE,
    REPO_ROOT,
    STATUS_CLIENT_ERROR,
    STATUS_DEADLINE_EXCEEDED,
    STATUS_FAILED_PRECONDITION,
    STATUS_OK,
    SYMBOL,
    BenchStack,
    ClientConfig,
    ClientRecords,
    CpuMeter,
    LoadGenerator,
    OrderFlow,
    OrderMix,
    StackOptions,
    StepResult,
    _ms,
    add_step_arguments,
    cpu_columns,
    cpu_per_order_ms,
    highest_held,
    measure_rate,
    parse_rates,
    place_request,
    prepare_exchange,
    run_client_steps,
    run_step,
    step_rates,
    step_table,
)
from exchange.v1 import orders_pb2, orders_pb2_grpc, types_pb2

START_MARKER = "<!-- session-bench:start -->"
END_MARKER = "<!-- session-bench:end -->"
DEFAULT_RATES = (250, 500, 1000, 1500, 2000, 3000, 4000)
CPU_ORDER = ("gateway", "engine", "stream", "store", "redis", "kafka", "clients")


class BenchSession:
    """One user's OrderSession: request() sends a request and awaits its answer by id."""

    def __init__(self, stub: orders_pb2_grpc.OrderServiceStub, api_key: str) -> None:
        self._requests: asyncio.Queue[orders_pb2.OrderSessionRequest] = asyncio.Queue()
        self._answers: dict[int, asyncio.Future[orders_pb2.OrderSessionResponse]] = {}
        self._request_ids = itertools.count(1)
        self.fills = 0
        self.ended: grpc.aio.AioRpcError | None = None
        self.call = stub.OrderSession(self._outgoing(), metadata=(("x-api-key", api_key),))
        self.reader = asyncio.ensure_future(self._read())

    async def _outgoing(self):
        while True:
            yield await self._requests.get()

    async def _read(self) -> None:
        try:
            async for response in self.call:
                if response.WhichOneof("response") == "fill":
                    self.fills += 1
                    continue
                answer = self._answers.pop(response.request_id, None)
                if answer is not None and not answer.done():
                    answer.set_result(response)
        except grpc.aio.AioRpcError as exc:
            self.ended = exc
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(exc)

    async def request(self, timeout: float, **request: object) -> orders_pb2.OrderSessionResponse:
        if self.ended is not None:
            raise self.ended
        request_id = next(self._request_ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        self._requests.put_nowait(orders_pb2.OrderSessionRequest(request_id=request_id, **request))
        try:
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._answers.pop(request_id, None)


def session_client_process(config: ClientConfig, conn) -> None:
    """Entry point of a load-generator process: one session per API key of `config`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_session_client_main(config, conn))


async def _session_client_main(config: ClientConfig, conn) -> None:
    channel = grpc.aio.insecure_channel(
        config.address, options=[("grpc.use_local_subchannel_pool", 1)]
    )
    await asyncio.wait_for(channel.channel_ready(), 30)
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    sessions = [BenchSession(stub, key) for key in config.api_keys]
    flow = OrderFlow(config.seed, len(sessions), config.mix)
    resting: collections.deque = collections.deque(maxlen=20_000)
    still_resting = (types_pb2.NEW, types_pb2.PARTIALLY_FILLED)
    conn.send("ready")

    def failed(records: ClientRecords, kind: int, name: str, details: str) -> None:
        message = f"{name} {KIND_NAMES[kind]}: {details[:160]}"
        records.messages[message] = records.messages.get(message, 0) + 1

    async def call(i: int, records: ClientRecords) -> None:
        spec = flow.next(resting)
        session = sessions[spec.user]
        kind, status = spec.kind, STATUS_OK
        records.sent[i] = time.monotonic()
        try:
            if kind == PLACE:
                request = place_request(spec, config.symbol)
                answer = await session.request(config.timeout_s, place=request)
            else:
                answer = await session.request(
                    config.timeout_s, cancel=orders_pb2.CancelOrderRequest(order_id=spec.order_id)
                )
            if answer.WhichOneof("response") == "error":
                status = answer.error.code
                if status != STATUS_FAILED_PRECONDITION:
                    failed(records, kind, answer.error.code_name, answer.error.message)
            elif kind == PLACE and answer.order.status in still_resting:
                resting.append((spec.user, answer.order.order_id))
        except TimeoutError:
            status = STATUS_DEADLINE_EXCEEDED
        except grpc.aio.AioRpcError as exc:
            status = exc.code().value[0]
            failed(records, kind, f"session ended {exc.code().name}", exc.details() or "")
        except Exception as exc:
            status = STATUS_CLIENT_ERROR
            failed(records, kind, "CLIENT_EXCEPTION", repr(exc))
        records.acked[i] = time.monotonic()
        records.status[i] = status
        records.kind[i] = kind

    await run_client_steps(config, conn, call)
    for session in sessions:
        session.call.cancel()
    await channel.close()


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
) -> str:
    cpus = os.cpu_count() or 1
    from bench.run_all import section_head

    lines = [
        *section_head(
            START_MARKER,
            "## Order sessions: bots on OrderSession streams → gateway → Redis → engine → Kafka",
            command,
            started,
            machine,
            loads,
        ),
        "| Setting | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in settings.items()),
        "",
        "**How it is measured.** As the end-to-end benchmark above (its own stack, the same "
        "order flow, open loop, latency from the due time, the same *held* rule: p99 ≤ "
        f"{p99_ms:g} ms, achieved ≥ 95%, errors + timeouts ≤ 0.1%), but every order and cancel "
        "goes over the user's one OrderSession stream and is matched to its answer by "
        "request_id (docs/order-sessions.md); the session also delivers the user's fills.",
        "",
        *step_table(steps, p99_ms),
        "",
    ]
    if best is not None:
        lines.append(
            f"**Highest rate held with p99 ≤ {p99_ms:g} ms: {best.offered:,} orders/s** "
            f"(achieved {best.achieved:,.0f}/s, p50 {_ms(best.p50_ms)} ms, p99 "
            f"{_ms(best.p99_ms)} ms); the unary calls' figure is in the end-to-end section."
        )
    else:
        lines.append(f"**No rate was held with p99 ≤ {p99_ms:g} ms.**")
    lines += [
        "",
        "**CPU per answered order**, ms, per process (cores used over the step, from "
        f"/proc/PID/stat, divided by the answers per second; {cpus} cores on this machine; *other "
        "work* is what the machine did besides this bench's processes, which the latencies above "
        "share the cores with):",
        "",
        "| offered/s | " + " | ".join(CPU_ORDER) + " | all but clients | cores busy (machine) "
        "| of which other work |",
        "|---:|" + "---:|" * (len(CPU_ORDER) + 3),
    ]
    for step in sorted(steps, key=lambda step: step.offered):
        per_order = cpu_per_order_ms(step)
        server = sum(value for name, value in per_order.items() if name not in ("clients", "bench"))
        cores = cpu_columns(step.cpu)
        machine_cores = cores.pop("machine", 0.0)
        other = max(machine_cores - sum(cores.values()), 0.0)
        lines.append(
            f"| {step.offered:,} | "
            + " | ".join(f"{per_order.get(name, 0.0):.2f}" for name in CPU_ORDER)
            + f" | {server:.2f} | {machine_cores:.2f} | {other:.2f} |"
        )
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.run_all import load_average, machine, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(
        parser,
        "requests",
        clients=4,
        users_help="participants, one session each (8)",
        rates=DEFAULT_RATES,
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCHMARKS, help="markdown file to write")
    parser.add_argument("--no-write", action="store_true", help="do not write the markdown")
    args = parser.parse_args(argv)
    rates = parse_rates(args.rates)
    if args.users < args.clients:
        parser.error("--users must be at least --clients (each client holds whole sessions)")

    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    if executable.startswith(".."):
        executable = "python"
    command = " ".join(
        [executable, "-m", "bench.session_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    data_dir = Path(tempfile.mkdtemp(prefix="mockex-session-"))
    bench = BenchStack(data_dir, StackOptions())
    load: LoadGenerator | None = None
    steps: list[StepResult] = []
    mix = OrderMix()
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
                api_keys=tuple(api_keys[index :: args.clients]),
                symbol=SYMBOL,
                seed=args.seed * 1000 + index,
                mix=mix,
            )
            for index in range(args.clients)
        ]
        print(f"session_bench: starting {args.clients} load-generator processes", file=sys.stderr)
        load = LoadGenerator(configs, target=session_client_process)
        meter = CpuMeter({**bench.pids, **load.pids, "bench": os.getpid()})
        run_step(load, meter, rates[0], args.warmup_seconds)  # sessions open, caches warm

        def measure(rate: int, note: str) -> StepResult:
            step = measure_rate(load, meter, rate, args.seconds, args.p99_ms, args.retries, note)
            steps.append(step)
            return step

        step_rates(rates, measure, args.p99_ms, args.stop_p99_ms, args.refine)
    finally:
        if load is not None:
            load.close()
        bench.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    best = highest_held(steps, args.p99_ms)
    settings = {
        "Load generator": f"{args.clients} processes, {args.users} users with one OrderSession "
        "each (one gRPC channel per process), open loop",
        "Order mix": f"as the end-to-end benchmark: LIMIT around a fixed mid, {mix.ioc_share:.0%} "
        f"IOC, qty 1–{mix.max_quantity}; {mix.cancel_share:.0%} of the requests cancel a resting "
        "order",
        "Step": f"{args.seconds:g} s per rate (+ {args.warmup_seconds:g} s warm-up); timeout "
        f"{configs[0].timeout_s:g} s",
        "Services": "engine, store, stream, 1 gateway (MOCKEX_SESSION_MAX_IN_FLIGHT default 64)",
    }
    section = render_section(
        command=command,
        started=started,
        loads=(load_at_start, load_average()),
        machine=machine(),
        settings=settings,
        steps=steps,
        p99_ms=args.p99_ms,
        best=best,
    )
    if not args.no_write:
        write_section(section, args.out, START_MARKER, END_MARKER)
        print(f"session_bench: wrote {args.out}", file=sys.stderr)
    print(
        f"session_bench: highest rate held with p99 <= {args.p99_ms:g} ms: "
        + (f"{best.offered:,}/s" if best else "none"),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
