"""Every benchmark `make bench` runs: the matching engine against the plain baseline, what fsync
on every log write costs (`bench.log_durability`), then the exchange end to end
(`bench.e2e_bench`).

Engine: generates the seeded flow (reused while its stamp matches), runs `bench.engine_bench`
for the engine and for the baseline in fresh processes, alternating, several rounds each; checks
that both report the same trades, traded quantity and final best bid/ask (exit 1 if not);
profiles the engine once; and rewrites its own section of BENCHMARKS.md (between the
engine-bench markers), leaving the rest of the file alone. End to end: runs
`python -m bench.e2e_bench` (its own stack; the same open-loop clients stepping through offered
rates against a bare grpc.aio echo, unary PlaceOrder, REST through Envoy and two gateway
processes, interleaved; about 10 minutes), which rewrites its own section (between the
e2e-bench markers), then
the same with the default scenario's bots trading alongside (`--scenario default`, its own
section). Order sessions: runs `python -m bench.session_bench` (the same steps with every order
on OrderSession streams; about 3 minutes), which rewrites its section (between the
session-bench markers).
The simulator's own load: runs `python -m bench.scenario_load` (its own stack playing the
default scenario, nobody else trading; about 3 minutes), which rewrites its section (between the
scenario-bench markers). Fan-out: `python -m bench.fanout_bench` (1,000 WebSocket and 1,000 gRPC
subscribers of one symbol at rising event rates; about 6 minutes). Soak: `python -m
bench.soak_bench` (10 minutes at half the unary rate the e2e section just measured, memory of
every process and of Redis), last because it reads that figure.

    python -m bench.run_all [--messages 1000000] [--seed 42] [--rounds 3]
                            [--only engine|durability|e2e|session|scenario|fanout|soak]
                            [--e2e-args "--rates 500,1000 --seconds 5"]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.flow import CANCEL, read_flow

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_DIR = REPO_ROOT / "build" / "bench"
BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"
START_MARKER = "<!-- engine-bench:start -->"
END_MARKER = "<!-- engine-bench:end -->"
GENERATOR_SOURCES = ("flow.py", "generate_flow.py", "baseline_matcher.py")
RESULT_LINE = re.compile(
    r"^messages=(?P<messages>\d+) trades=(?P<trades>\d+) traded_quantity=(?P<traded_quantity>\d+)"
    r" best_bid=(?P<best_bid>-|\d+) best_ask=(?P<best_ask>-|\d+) msgs_per_s=(?P<msgs_per_s>\d+)$"
)
TIMING_LINE = re.compile(
    r"^wall_s=(?P<wall_s>[\d.]+) cpu_s=(?P<cpu_s>[\d.]+) cpu_msgs_per_s=(?P<cpu_msgs_per_s>\d+)$"
)
OUTCOME_FIELDS = ("messages", "trades", "traded_quantity", "best_bid", "best_ask")
PROFILE_ROWS = 10


@dataclass(frozen=True)
class Run:
    engine: str
    round: int
    fields: dict[str, str]

    @property
    def msgs_per_s(self) -> int:
        return int(self.fields["msgs_per_s"])

    @property
    def cpu_msgs_per_s(self) -> int:
        return int(self.fields.get("cpu_msgs_per_s", 0))

    def outcome(self) -> tuple[str, ...]:
        return tuple(self.fields[name] for name in OUTCOME_FIELDS)


def log(message: str) -> None:
    print(f"run_all: {message}", file=sys.stderr, flush=True)


def size_label(messages: int) -> str:
    """1000000 -> '1m', 20000 -> '20k', anything else as is."""
    if messages % 1_000_000 == 0:
        return f"{messages // 1_000_000}m"
    if messages % 1_000 == 0:
        return f"{messages // 1_000}k"
    return str(messages)


def generator_digest() -> str:
    """What the flow depends on besides size and seed: the generator's own sources."""
    digest = hashlib.sha256()
    for name in GENERATOR_SOURCES:
        digest.update((REPO_ROOT / "bench" / name).read_bytes())
    return digest.hexdigest()[:16]


def ensure_flow(messages: int, seed: int, flow_dir: Path) -> tuple[Path, bool]:
    """The flow file for (messages, seed), generated unless a matching stamped one exists."""
    flow_dir.mkdir(parents=True, exist_ok=True)
    path = flow_dir / f"flow-{size_label(messages)}.csv"
    stamp_path = path.with_name(path.name + ".stamp")
    want = {"messages": messages, "seed": seed, "generator": generator_digest()}
    if path.exists() and stamp_path.exists():
        try:
            stamp = json.loads(stamp_path.read_text())
        except ValueError:
            stamp = {}
        same_input = {key: stamp.get(key) for key in want} == want
        if same_input and stamp.get("bytes") == path.stat().st_size:
            log(f"reusing {path.relative_to(REPO_ROOT)} (stamp matches: {want})")
            return path, True
    stamp_path.unlink(missing_ok=True)
    log(f"generating {path.relative_to(REPO_ROOT)}: {messages:,} messages, seed {seed}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.generate_flow",
            "--messages",
            str(messages),
            "--seed",
            str(seed),
            "--out",
            str(path),
        ],
        cwd=REPO_ROOT,
        check=True,
    )
    stamp_path.write_text(json.dumps({**want, "bytes": path.stat().st_size}) + "\n")
    return path, False


def bench_command(flow: Path, engine: str, profile: bool = False) -> list[str]:
    command = [sys.executable, "-m", "bench.engine_bench", "--flow", str(flow), "--engine", engine]
    if profile:
        command.append("--profile")
    return command


def run_bench(flow: Path, engine: str, round_number: int) -> Run:
    completed = subprocess.run(
        bench_command(flow, engine), cwd=REPO_ROOT, check=True, capture_output=True, text=True
    )
    lines = completed.stdout.strip().splitlines()
    last_line = lines[-1]
    match = RESULT_LINE.match(last_line)
    if match is None:
        raise SystemExit(f"run_all: {engine} printed an unexpected last line: {last_line!r}")
    fields = match.groupdict()
    timing = TIMING_LINE.match(lines[-2]) if len(lines) > 1 else None
    if timing is not None:
        fields.update(timing.groupdict())
    run = Run(engine, round_number, fields)
    log(f"round {round_number} {engine:8} {last_line}")
    return run


def check_same_outcome(runs: list[Run]) -> dict[str, str]:
    """Every run, engine or baseline, must end with the same trades, quantity and book."""
    outcomes = {run.outcome() for run in runs}
    if len(outcomes) != 1:
        lines = "\n".join(f"  {run.engine} round {run.round}: {run.fields}" for run in runs)
        raise SystemExit(
            "run_all: MISMATCH: the engine and the baseline disagree on "
            f"{', '.join(OUTCOME_FIELDS)}:\n{lines}"
        )
    return dict(zip(OUTCOME_FIELDS, outcomes.pop(), strict=True))


def profile_engine(flow: Path) -> list[str]:
    """The engine's top functions by own time, from one run under cProfile."""
    log("profiling the engine (cProfile)")
    completed = subprocess.run(
        bench_command(flow, "engine", profile=True),
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    lines = completed.stdout.splitlines()
    rows: list[str] = []
    header_seen = False
    for line in lines:
        if line.strip().startswith("ncalls"):
            header_seen = True
            rows.append(line.rstrip())
            continue
        if header_seen:
            if not line.strip():
                break
            rows.append(line.rstrip().replace(str(REPO_ROOT) + os.sep, ""))
    total = next((line.strip() for line in lines if "function calls" in line), "")
    return [total, *rows[: PROFILE_ROWS + 1]]


def profile_shares(profile: list[str]) -> str:
    """'name 18%, ...': each top function's share of the profiled run's own time."""
    total = re.search(r"in ([\d.]+) seconds", profile[0]) if profile else None
    if total is None or not float(total.group(1)):
        return ""
    shares = []
    for row in profile[2:]:
        columns = row.split(None, 5)
        if len(columns) < 6:
            continue
        where = columns[5]  # "path/file.py:line(function)" or "{built-in method ... at 0x...}"
        if where.startswith("{"):
            name = re.sub(r" of type object at 0x[0-9a-f]+| at 0x[0-9a-f]+", "", where.strip("{}"))
        else:
            path, function = where.rsplit("(", 1)
            name = f"{Path(path.rsplit(':', 1)[0]).name} {function[:-1]}"
        shares.append(f"`{name}` {float(columns[1]) / float(total.group(1)):.0%}")
    return ", ".join(shares)


def flow_summary(flow: Path) -> str:
    counts: Counter[str] = Counter()
    for message in read_flow(flow):
        if message.op == CANCEL:
            counts["cancel"] += 1
        else:
            counts[f"{message.type.name} {message.tif.name}"] += 1
    total = sum(counts.values())
    return ", ".join(f"{name} {count / total:.1%}" for name, count in counts.most_common())


def machine() -> dict[str, str]:
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        os_name = f"{release.get('PRETTY_NAME', '').strip(chr(34))} ({platform.platform()})"
    except OSError:
        pass
    return {
        "CPU": cpu,
        "Cores": f"{os.cpu_count()} logical",
        "RAM": memory,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": os_name,
    }


def section_head(
    start_marker: str,
    title: str,
    command: str,
    started: datetime.datetime,
    machine_facts: dict[str, str],
    loads: tuple[str, str],
) -> list[str]:
    """The opening every benchmark's section of BENCHMARKS.md shares: its marker and title, the
    command and time it was written by, the machine and the load around the run."""
    return [
        start_marker,
        title,
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC. Rewritten on every run; "
        "only this section.",
        "",
        "| Machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine_facts.items()),
        f"| Load average (1/5/15 min) | {loads[0]} at start, {loads[1]} at the end |",
        "",
    ]


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def medians(runs: list[Run], engine: str) -> tuple[float, float]:
    """(wall-clock, CPU-time) median msgs/s of one engine's runs."""
    mine = [run for run in runs if run.engine == engine]
    return (
        statistics.median(run.msgs_per_s for run in mine),
        statistics.median(run.cpu_msgs_per_s for run in mine),
    )


def render_section(
    *,
    command: str,
    started: datetime.datetime,
    loads: tuple[str, str],
    flow: Path,
    seed: int,
    reused: bool,
    summary: str,
    runs: list[Run],
    outcome: dict[str, str],
    profile: list[str],
) -> str:
    engine_wall, engine_cpu = medians(runs, "engine")
    baseline_wall, baseline_cpu = medians(runs, "baseline")
    ratio = engine_wall / baseline_wall
    cpu_ratio = engine_cpu / baseline_cpu if baseline_cpu else 0.0
    verdict = "met" if ratio >= 1 else "NOT met"
    rounds = sorted({run.round for run in runs})
    lines = [
        *section_head(
            START_MARKER,
            "## Matching engine vs the plain baseline (order-flow file)",
            command,
            started,
            machine(),
            loads,
        ),
        f"**Flow**: `{flow.relative_to(REPO_ROOT)}`, {int(outcome['messages']):,} messages, "
        f"seed {seed}, made by `bench.generate_flow`"
        f"{' (reused: its stamp matched)' if reused else ''}: {summary}.",
        "",
        "**What each side does.** *engine*: the production `MatchingEngine` (one symbol, user id "
        '"" so accounts and self-trade prevention are off), building every order\'s status and '
        "every event with its sequence number; the bench walks each call's event list and counts "
        "`TradeExecuted`. *baseline*: `bench.baseline_matcher`, dict of price levels as lists plus "
        "a `bisect`-sorted price list, counting trades only. Each run is a fresh process; the flow "
        "is parsed before the clock starts. msgs/s is wall-clock (the official figure); the CPU "
        "columns divide by the process's CPU time over the same loop, which a busy machine "
        "disturbs less.",
        "",
        "| Round | engine msgs/s | baseline msgs/s | engine (CPU) | baseline (CPU) | order |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for number in rounds:
        by_engine = {run.engine: run for run in runs if run.round == number}
        order = " → ".join(run.engine for run in runs if run.round == number)
        engine, baseline = by_engine["engine"], by_engine["baseline"]
        lines.append(
            f"| {number} | {engine.msgs_per_s:,} | {baseline.msgs_per_s:,} | "
            f"{engine.cpu_msgs_per_s:,} | {baseline.cpu_msgs_per_s:,} | {order} |"
        )
    lines += [
        f"| **median** | **{int(engine_wall):,}** | **{int(baseline_wall):,}** | "
        f"{int(engine_cpu):,} | {int(baseline_cpu):,} | |",
        "",
        f"**Ratio engine / baseline: {ratio:.2f}** (wall-clock medians; {cpu_ratio:.2f} on CPU "
        f"time). Goal (engine ≥ baseline): **{verdict}**.",
        "",
        f"Both produced, in every round: trades={outcome['trades']}, "
        f"traded_quantity={outcome['traded_quantity']}, best_bid={outcome['best_bid']}, "
        f"best_ask={outcome['best_ask']}.",
        "",
        f"**Where the engine's time goes** (cProfile, one extra run, top {PROFILE_ROWS} by own "
        "time; the profiler slows every call, so compare rows, not with the figures above):",
        "",
        "```",
        *profile,
        "```",
        "",
        f"Share of the profiled run's own time: {profile_shares(profile)}. `run_engine` is the "
        "bench's own loop (dispatching each message, walking each event list); the rest is the "
        "engine and what it calls.",
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def write_section(
    section: str,
    path: Path = BENCHMARKS,
    start_marker: str = START_MARKER,
    end_marker: str = END_MARKER,
) -> None:
    """Replace one benchmark's section of the file (between its markers), or add it at the end;
    the rest stays as it is."""
    if not path.exists():
        path.write_text(
            "# Benchmarks\n\nMeasured by `make bench` (`bench/run_all.py`).\n\n" + section
        )
        return
    text = path.read_text()
    start = text.find(start_marker)
    end = text.find(end_marker)
    if start != -1 and end > start:
        end += len(end_marker)
        if text[end : end + 1] == "\n":
            end += 1
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="flow size (1000000)")
    parser.add_argument("--seed", type=int, default=42, help="flow seed (42)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per engine (3)")
    parser.add_argument(
        "--out", type=Path, default=BENCHMARKS, help="file to write (BENCHMARKS.md)"
    )
    parser.add_argument(
        "--only",
        choices=("engine", "durability", "e2e", "session", "scenario", "fanout", "soak"),
        help="run only the engine, the log durability, the e2e, the order-session, the "
        "scenario-load, the fan-out or the soak benchmark",
    )
    parser.add_argument(
        "--e2e-args", default="", help="extra arguments for bench.e2e_bench, as one string"
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")

    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    if executable.startswith(".."):
        executable = "python"
    command = " ".join(
        [executable, "-m", "bench.run_all", *(argv if argv is not None else sys.argv[1:])]
    )

    if args.only in (None, "engine"):
        run_engine_bench(args, command, started, load_at_start)
    if args.only in (None, "durability"):
        durability_command = [
            sys.executable,
            "-m",
            "bench.log_durability",
            *(["--out", str(args.out)] if args.out != BENCHMARKS else []),
        ]
        log("log durability: " + " ".join(durability_command[1:]))
        subprocess.run(durability_command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    if args.only in (None, "e2e"):
        e2e_command = [
            sys.executable,
            "-m",
            "bench.e2e_bench",
            *shlex.split(args.e2e_args),
            *(["--out", str(args.out)] if args.out != BENCHMARKS else []),
        ]
        log("end-to-end benchmark: " + " ".join(e2e_command[1:]))
        subprocess.run(e2e_command, cwd=REPO_ROOT, check=True)
        with_bots = [*e2e_command, "--scenario", "default"]
        log("end-to-end benchmark with the default scenario's bots: " + " ".join(with_bots[1:]))
        subprocess.run(with_bots, cwd=REPO_ROOT, check=True)
    if args.only in (None, "session"):
        session_command = [
            sys.executable,
            "-m",
            "bench.session_bench",
            *(["--out", str(args.out)] if args.out != BENCHMARKS else []),
        ]
        log("order-session benchmark: " + " ".join(session_command[1:]))
        subprocess.run(session_command, cwd=REPO_ROOT, check=True)
    if args.only in (None, "scenario"):
        scenario_command = [
            sys.executable,
            "-m",
            "bench.scenario_load",
            *(["--out", str(args.out)] if args.out != BENCHMARKS else []),
        ]
        log("the simulator's own load: " + " ".join(scenario_command[1:]))
        subprocess.run(scenario_command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    for name, module, what in (
        ("fanout", "bench.fanout_bench", "market-data fan-out"),
        ("soak", "bench.soak_bench", "soak at half the held unary rate"),
    ):
        if args.only in (None, name):
            command = [
                sys.executable,
                "-m",
                module,
                *(["--out", str(args.out)] if args.out != BENCHMARKS else []),
            ]
            log(f"{what}: " + " ".join(command[1:]))
            subprocess.run(command, cwd=REPO_ROOT, check=True)
    return 0


def run_engine_bench(
    args: argparse.Namespace, command: str, started: datetime.datetime, load_at_start: str
) -> None:
    flow, reused = ensure_flow(args.messages, args.seed, FLOW_DIR)
    runs: list[Run] = []
    for number in range(1, args.rounds + 1):
        order = ("engine", "baseline") if number % 2 else ("baseline", "engine")
        for engine in order:
            runs.append(run_bench(flow, engine, number))
    outcome = check_same_outcome(runs)
    profile = profile_engine(flow)
    section = render_section(
        command=command,
        started=started,
        loads=(load_at_start, load_average()),
        flow=flow,
        seed=args.seed,
        reused=reused,
        summary=flow_summary(flow),
        runs=runs,
        outcome=outcome,
        profile=profile,
    )
    write_section(section, args.out)
    engine_median, _ = medians(runs, "engine")
    baseline_median, _ = medians(runs, "baseline")
    log(
        f"engine {int(engine_median):,} msgs/s, baseline {int(baseline_median):,} msgs/s, "
        f"ratio {engine_median / baseline_median:.2f}; wrote {args.out}"
    )


if __name__ == "__main__":
    sys.exit(main())
