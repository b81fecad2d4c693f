"""Soak benchmark: a steady open-loop order load for minutes; memory must stay flat.

    python -m bench.soak_bench [--minutes 10] [--rate N] [--warmup-minutes 2] [--scenario default]

Starts its own stack (bench.e2e_bench's BenchStack: Redis, Kafka, engine, store, stream,
gateway), drives e2e_bench's unary load generator at `--rate` orders/s (default: half the
highest unary rate held in BENCHMARKS.md's end-to-end section) in back-to-back steps of
`--step-seconds`, and every `--sample-seconds` reads each exchange process's resident memory
(/proc/PID/status VmRSS) and Redis's `INFO memory` used_memory and `INFO keyspace`.

Verdicts: every process's RSS grows ≤ 10% from the end of the warm-up to the end (medians of a
minute's samples each; Redis's own RSS is judged as Redis); Redis is bounded: its used_memory
growth over the same span, less what the keys with an expiry added (the per-order caches, kept
FINISHED_ORDER_TTL_SECONDS once finished; their cost is measured by deleting them after the
load), is ≤ 10%; no call
failed or timed out, no process exited, no Traceback or ERROR line in a service log. The section
goes to BENCHMARKS.md between the soak-bench markers; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.e2e_bench import (
    BENCHMARKS,
    REPO_ROOT,
    SYMBOL,
    UNARY,
    BenchStack,
    ClientConfig,
    CpuMeter,
    LoadGenerator,
    OrderMix,
    StackOptions,
    StepResult,
    _ms,
    prepare_exchange,
    run_step,
)
from bench.e2e_bench import END_MARKER as E2E_END
from bench.e2e_bench import START_MARKER as E2E_START

START_MARKER = "<!-- soak-bench:start -->"
END_MARKER = "<!-- soak-bench:end -->"
MAX_GROWTH = 0.10
"""Largest growth from the end of the warm-up to the end that counts as flat."""
WINDOW_S = 60.0
"""A process's RSS at the end of the warm-up and at the end: the median over this long."""
FALLBACK_RATE = 100
"""Orders/s when BENCHMARKS.md holds no end-to-end figure to take half of."""
HELD_LINE = re.compile(r"Highest rate held with p99 ≤ [\d.]+ ms: \**([\d,]+)(?: orders)?/s")
UNARY_TITLE = "**Unary `PlaceOrder`, 1 gateway process**"
REDIS = "redis"
ERROR_LINE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


def log(message: str) -> None:
    print(f"soak_bench: {message}", file=sys.stderr, flush=True)


# ---- pure parts ------------------------------------------------------------------------------


def held_unary_rate(benchmarks: str) -> int | None:
    """The highest unary PlaceOrder rate held in the end-to-end section, if it has one."""
    start, end = benchmarks.find(E2E_START), benchmarks.find(E2E_END)
    if start < 0 or end < start:
        return None
    section = benchmarks[start:end]
    title = section.find(UNARY_TITLE)
    found = HELD_LINE.search(section, max(title, 0))
    return int(found.group(1).replace(",", "")) if found else None


def vm_rss_kib(status: str) -> int | None:
    """VmRSS of a /proc/PID/status text, in KiB (None for a process without memory: a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def key_family(key: str) -> str:
    """Redis keys grouped by kind: `exchange:v1:order:ab12` -> `exchange:v1:order:*`."""
    parts = key.split(":")
    return key if len(parts) <= 3 else ":".join(parts[:3]) + ":*"


def growth(first: float, last: float) -> float:
    """Relative growth from `first` to `last` (0.1 is 10%)."""
    return (last - first) / first if first else 0.0


@dataclass(frozen=True)
class Sample:
    """One reading of every process and of Redis, `at` seconds after the load started."""

    at: float
    rss_kib: dict[str, int]
    redis_used: int
    redis_keys: int
    redis_expires: int
    """Keys with an expiry (the per-order caches)."""


@dataclass(frozen=True)
class Family:
    """One kind of Redis key at the end: how many, their bytes (MEMORY USAGE), how many expire."""

    keys: int
    bytes: int
    expiring: int


def warm_sample(samples: Sequence[Sample], warmup_s: float) -> Sample:
    """The first sample at or after the end of the warm-up (the last one if the run was short)."""
    return next((sample for sample in samples if sample.at >= warmup_s), samples[-1])


@dataclass(frozen=True)
class ProcessVerdict:
    name: str
    warm_kib: int
    end_kib: int
    peak_kib: int

    @property
    def growth(self) -> float:
        return growth(self.warm_kib, self.end_kib)

    @property
    def flat(self) -> bool:
        return self.growth <= MAX_GROWTH


def process_verdicts(samples: Sequence[Sample], warmup_s: float) -> list[ProcessVerdict]:
    """Per process: RSS at the end of the warm-up and at the end, each the median of the samples
    of a WINDOW_S window (the first after the warm-up, the last), so that one sample taken
    during a burst of queued calls does not decide; and the peak after the warm-up."""
    warm, last = warm_sample(samples, warmup_s), samples[-1]
    after = [sample for sample in samples if sample.at >= warm.at]
    first_window = [sample for sample in after if sample.at < warm.at + WINDOW_S]
    last_window = [sample for sample in after if sample.at > last.at - WINDOW_S]

    def median_of(window: list[Sample], name: str) -> int:
        return round(statistics.median(sample.rss_kib.get(name, 0) for sample in window))

    return [
        ProcessVerdict(
            name,
            median_of(first_window, name),
            median_of(last_window, name),
            max(sample.rss_kib.get(name, 0) for sample in after),
        )
        for name in warm.rss_kib
    ]


@dataclass(frozen=True)
class RedisVerdict:
    warm_used: int
    end_used: int
    added_expiring: int
    """Keys with an expiry added from the warm-up's end to the end."""
    expiring_key_bytes: float
    """What a key with an expiry costs: used_memory freed per key when they were deleted at
    the end (its value and the dictionaries' entries), not MEMORY USAGE, which leaves those
    out."""

    @property
    def growth(self) -> float:
        return growth(self.warm_used, self.end_used)

    @property
    def untimed_growth(self) -> float:
        """Growth not accounted for by keys that expire: what would grow without bound."""
        expiring = self.added_expiring * self.expiring_key_bytes
        return growth(self.warm_used, self.end_used - expiring)

    @property
    def bounded(self) -> bool:
        return self.untimed_growth <= MAX_GROWTH


def redis_verdict(
    samples: Sequence[Sample], warmup_s: float, freed: int, deleted: int
) -> RedisVerdict:
    """`freed` bytes of used_memory went when the `deleted` keys with an expiry were deleted."""
    warm, last = warm_sample(samples, warmup_s), samples[-1]
    per_key = freed / deleted if deleted else 0.0
    return RedisVerdict(
        warm.redis_used, last.redis_used, last.redis_expires - warm.redis_expires, per_key
    )


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.1f}"


def render_section(
    head: list[str],
    settings: dict[str, str],
    steps: Sequence[StepResult],
    samples: Sequence[Sample],
    warmup_s: float,
    families: dict[str, Family],
    freed: tuple[int, int],
    cpu_ms_per_order: dict[str, float],
    problems: Sequence[str],
    order_ttl_s: int,
) -> str:
    """`freed`: (bytes, keys) that deleting the keys with an expiry gave back at the end."""
    processes = process_verdicts(samples, warmup_s)
    redis = redis_verdict(samples, warmup_s, *freed)
    failed = sum(step.error_count + step.timeouts for step in steps)
    answered = sum(step.ok for step in steps)
    # Redis's own RSS holds the expiring caches: judged by the Redis verdict below.
    flat = all(verdict.flat for verdict in processes if verdict.name != REDIS)
    ok = flat and redis.bounded and not failed and not problems
    rate = steps[0].offered if steps else 0
    lines = [
        *head,
        "| Setting | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in settings.items()),
        "",
        f"**Verdict: {'met' if ok else 'NOT met'}** — every process's RSS within "
        f"{MAX_GROWTH:.0%} of its value at the end of the warm-up: "
        f"{'yes' if flat else '**no**'}; Redis bounded: {'yes' if redis.bounded else '**no**'}; "
        f"failed calls: {failed:,} of {answered + failed:,}; other problems: "
        f"{'; '.join(problems) if problems else 'none'}.",
        "",
        f"**Resident memory per process** (VmRSS, MiB; *warm-up end* is the median of the "
        f"samples of the {WINDOW_S:g} s after {warmup_s / 60:g} min, *end* of the last "
        f"{WINDOW_S:g} s; *peak* the highest sample after the warm-up):",
        "",
        "| process | warm-up end | end | peak after warm-up | growth | CPU ms/order | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for verdict in processes:
        cpu = cpu_ms_per_order.get(verdict.name)
        lines.append(
            f"| {verdict.name} | {_mib(verdict.warm_kib)} | {_mib(verdict.end_kib)} | "
            f"{_mib(verdict.peak_kib)} | {verdict.growth:+.1%} | "
            f"{'-' if cpu is None else f'{cpu:.3f}'} | "
            + (
                "see Redis below"
                if verdict.name == REDIS
                else "flat"
                if verdict.flat
                else "**grows**"
            )
            + " |"
        )
    projected = rate * order_ttl_s * redis.expiring_key_bytes
    lines += [
        "",
        f"**Redis** (`INFO memory` used_memory, MiB): {_mib(redis.warm_used / 1024)} at the "
        f"warm-up's end, {_mib(redis.end_used / 1024)} at the end ({redis.growth:+.1%}); "
        f"{redis.added_expiring:,} keys with an expiry were added meanwhile, "
        f"{redis.expiring_key_bytes:,.0f} bytes each (used_memory freed per key by deleting "
        f"them at the end), so growth not accounted for by expiring keys: "
        f"{redis.untimed_growth:+.1%} "
        f"({'bounded' if redis.bounded else '**grows without bound**'}). *Bounded* means that: "
        f"what does not expire grows ≤ {MAX_GROWTH:.0%}. The expiring keys level off after "
        f"their time to live ({order_ttl_s / 60:g} min for a finished order; an open one stays "
        f"a day): at {rate:,} orders/s that is about {projected / 2**20:,.0f} MiB.",
        "",
        "Redis keys at the end, by kind:",
        "",
        "| keys | count | MiB | with an expiry |",
        "|---|---:|---:|---:|",
    ]
    for name, family in sorted(families.items(), key=lambda item: -item[1].bytes):
        lines.append(
            f"| `{name}` | {family.keys:,} | {_mib(family.bytes / 1024)} | {family.expiring:,} |"
        )
    lines += [
        "",
        "**Load, step by step** (each step open loop at the same rate):",
        "",
        "| step | offered/s | achieved/s | calls | p50 ms | p99 ms | max ms | timeouts | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, step in enumerate(steps, 1):
        errors = ", ".join(f"{name} {count}" for name, count in sorted(step.errors.items()))
        lines.append(
            f"| {number} | {step.offered:,} | {step.achieved:,.0f} | {step.sent:,} | "
            f"{_ms(step.p50_ms)} | {_ms(step.p99_ms)} | {_ms(step.max_ms)} | {step.timeouts:,} | "
            f"{errors or 0} |"
        )
    failures = [(number, step) for number, step in enumerate(steps, 1) if step.messages]
    if failures:
        lines += ["", "Failed calls, by message (the most frequent per step):", ""]
        for number, step in failures:
            shown = "; ".join(f"`{text}` ×{count}" for text, count in step.messages.items())
            lines.append(f"- step {number}: {shown}")
    lines += ["", END_MARKER, ""]
    return "\n".join(lines)


# ---- measuring -------------------------------------------------------------------------------


def read_rss(pids: dict[str, int]) -> dict[str, int]:
    found = {}
    for name, pid in pids.items():
        try:
            kib = vm_rss_kib(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        if kib is not None:
            found[name] = kib
    return found


class Sampler:
    """Reads every process and Redis every `every` seconds, in a thread of its own (the main
    thread waits for the load generator's results)."""

    def __init__(self, pids: dict[str, int], redis_url: str, every: float) -> None:
        from redis import Redis

        self.pids = pids
        self.redis = Redis.from_url(redis_url)
        self.every = every
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._began = 0.0
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def sample(self) -> Sample:
        memory = self.redis.info("memory")
        keyspace = self.redis.info("keyspace").get("db0", {})
        return Sample(
            at=time.monotonic() - self._began,
            rss_kib=read_rss(self.pids),
            redis_used=int(memory["used_memory"]),
            redis_keys=int(keyspace.get("keys", 0)),
            redis_expires=int(keyspace.get("expires", 0)),
        )

    def _run(self) -> None:
        while True:
            sample = self.sample()
            self.samples.append(sample)
            redis_mib = sample.redis_used / 2**20
            log(
                f"t={sample.at:5.0f}s redis {redis_mib:.1f} MiB, {sample.redis_keys:,} keys; rss "
                + " ".join(f"{name}={_mib(kib)}" for name, kib in sorted(sample.rss_kib.items()))
            )
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())
        self.redis.close()


def redis_families(redis_url: str) -> dict[str, Family]:
    """Every key by kind, with its MEMORY USAGE and whether it expires (after the load)."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    keys: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    expiring: Counter[str] = Counter()
    try:
        batch: list[bytes] = []

        def measure() -> None:
            pipeline = client.pipeline(transaction=False)
            for key in batch:
                pipeline.memory_usage(key)
                pipeline.pttl(key)
            answers = pipeline.execute()
            for index, key in enumerate(batch):
                family = key_family(key.decode(errors="replace"))
                keys[family] += 1
                sizes[family] += answers[2 * index] or 0
                expiring[family] += answers[2 * index + 1] > 0
            batch.clear()

        for key in client.scan_iter(count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                measure()
        measure()
    finally:
        client.close()
    return {name: Family(keys[name], sizes[name], expiring[name]) for name in keys}


def free_expiring_keys(redis_url: str) -> tuple[int, int]:
    """Delete every key with an expiry (after the load, before the stack stops): the
    used_memory that gave back and how many keys, i.e. what such a key really costs."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    try:
        before = int(client.info("memory")["used_memory"])
        deleted = 0
        batch: list[bytes] = []

        def delete_expiring() -> int:
            pipeline = client.pipeline(transaction=False)
            for key in batch:
                pipeline.pttl(key)
            expiring = [key for key, ttl in zip(batch, pipeline.execute(), strict=True) if ttl > 0]
            if expiring:
                client.delete(*expiring)
            batch.clear()
            return len(expiring)

        for key in client.scan_iter(count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += delete_expiring()
        deleted += delete_expiring()
        return before - int(client.info("memory")["used_memory"]), deleted
    finally:
        client.close()


def service_log_problems(log_dir: Path) -> list[str]:
    """Lines of the services' logs that report an error, counted per log."""
    problems = []
    for path in sorted(log_dir.glob("*.log")):
        count = sum(bool(ERROR_LINE.search(line)) for line in path.read_text().splitlines())
        if count:
            problems.append(f"{count} error lines in {path.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    from bench.run_all import load_average, machine, section_head, write_section
    from mockex.names import FINISHED_ORDER_TTL_SECONDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    parser.add_argument(
        "--rate", type=int, help="orders/s (half the unary rate held in BENCHMARKS.md)"
    )
    parser.add_argument(
        "--warmup-minutes", type=float, default=2.0, help="growth counts from here (2)"
    )
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="sampling period (10)")
    parser.add_argument("--step-seconds", type=float, default=60.0, help="seconds per step (60)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument("--users", type=int, default=64, help="participants (64)")
    parser.add_argument("--scenario", default="", help="a scenario whose bots trade too")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCHMARKS)
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    held = held_unary_rate(args.out.read_text() if args.out.exists() else "")
    rate = args.rate or (held // 2 if held else FALLBACK_RATE)
    rate_source = (
        "--rate"
        if args.rate
        else f"half the unary rate held in BENCHMARKS.md ({held:,}/s)"
        if held
        else "no held rate in BENCHMARKS.md: the fallback"
    )
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    if executable.startswith(".."):
        executable = "python"
    command = " ".join(
        [executable, "-m", "bench.soak_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    seconds = args.minutes * 60
    data_dir = Path(tempfile.mkdtemp(prefix="mockex-soak-"))
    bench = BenchStack(data_dir, StackOptions(scenario=args.scenario))
    load: LoadGenerator | None = None
    steps: list[StepResult] = []
    problems: list[str] = []
    mix = OrderMix()
    try:
        bench.start()
        stack = bench.stack
        gateway = f"127.0.0.1:{stack.ports.gateway}"
        api_keys = asyncio.run(prepare_exchange(gateway, stack.admin_key, args.users))
        configs = [
            ClientConfig(
                index=index,
                clients=args.clients,
                address=gateway,
                api_keys=tuple(api_keys),
                symbol=SYMBOL,
                seed=args.seed * 1000 + index,
                mix=mix,
            )
            for index in range(args.clients)
        ]
        log(f"starting {args.clients} load-generator processes")
        load = LoadGenerator(configs)
        load.prepare(UNARY, [gateway])
        pids = bench.pids
        meter = CpuMeter(pids)
        sampler = Sampler(pids, stack.redis_url, args.sample_seconds)
        log(f"{rate:,} orders/s ({rate_source}) for {args.minutes:g} min")
        sampler.start()
        before = meter.sample()
        remaining = seconds
        while remaining > 0:
            step = run_step(load, meter, rate, min(args.step_seconds, remaining), target=UNARY)
            steps.append(step)
            remaining -= step.seconds
            log(
                f"step {len(steps)}: achieved {step.achieved:,.0f}/s, p99 {_ms(step.p99_ms)} ms, "
                f"failed {step.error_count + step.timeouts}"
                + "".join(f"\n    {count} x {text}" for text, count in step.messages.items())
            )
        after = meter.sample()
        sampler.stop()
        wall = after[0] - before[0]
        answered = sum(step.ok for step in steps)
        cores = meter.cores(before, after)
        cpu_ms = {
            name: cores[name] * wall / answered * 1000
            for name in pids
            if answered and name in cores
        }
        for name, process in stack.processes.items():
            if not process.alive():
                problems.append(f"{name} exited (code {process.returncode})")
        problems += service_log_problems(stack.data_dir / "logs")
        families = redis_families(stack.redis_url)
        freed = free_expiring_keys(stack.redis_url)
    finally:
        if load is not None:
            load.close()
        bench.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    head = section_head(
        START_MARKER,
        "## Soak: a steady order load for minutes, memory after warm-up",
        command,
        started,
        machine(),
        (load_at_start, load_average()),
    )
    settings = {
        "Load": f"{rate:,} orders/s ({rate_source}), open loop, {args.clients} load-generator "
        f"processes, {args.users} users, for {args.minutes:g} min in steps of "
        f"{args.step_seconds:g} s",
        "Order mix": mix.describe(),
        "Services": "engine, store, stream, 1 gateway"
        + (f", data_svc playing `{args.scenario}`" if args.scenario else ", no simulator"),
        "Sampling": f"every {args.sample_seconds:g} s: /proc/PID/status VmRSS per process, "
        "Redis `INFO memory` used_memory and `INFO keyspace`",
    }
    section = render_section(
        head,
        settings,
        steps,
        sampler.samples,
        args.warmup_minutes * 60,
        families,
        freed,
        cpu_ms,
        problems,
        FINISHED_ORDER_TTL_SECONDS,
    )
    if not args.no_write:
        write_section(section, args.out, START_MARKER, END_MARKER)
        log(f"wrote {args.out}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
