"""What it costs to make the local broker fsync every write, so an acknowledged order survives
a machine crash (power loss), not only a crash of the broker process.

One real broker (its own, on free ports), two topics that differ only in `flush.messages`:
the default (Kafka leaves flushing to the OS page cache: acks=all means "in the broker's memory
and the page cache") and 1 (Kafka fsyncs the log segment before it acknowledges). The engine's
write pattern is replayed against each, alternating: rounds of N records of an order's size
sent together and awaited together (one engine round), sequentially. Reports, per topic, the
round latency (p50, p99) and records per second, and the extra latency per order of fsync.

    python -m bench.log_durability [--records 3000] [--round-sizes 1,10,50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.run_all import BENCHMARKS, load_average, machine, section_head, write_section
from mockex import processes

START_MARKER = "<!-- log-durability:start -->"
END_MARKER = "<!-- log-durability:end -->"
RECORD_BYTES = 320
"""About one EngineBatch of a LIMIT order with a fill (measured on the e2e bench's log)."""
TOPICS = {"page cache (default)": {}, "fsync every write": {"flush.messages": "1"}}


def log(message: str) -> None:
    print(f"log_durability: {message}", file=sys.stderr, flush=True)


async def create(bootstrap: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = {label: f"durability-{i}" for i, label in enumerate(TOPICS)}
        await admin.create_topics(
            [
                NewTopic(topics[label], 1, 1, topic_configs=config)
                for label, config in TOPICS.items()
            ]
        )
        return topics
    finally:
        await admin.close()


async def rounds(producer: AIOKafkaProducer, topic: str, records: int, size: int) -> list[float]:
    """Round latencies (seconds) for `records` records sent `size` at a time, as the engine
    sends a round: every send queued, then every ack awaited."""
    payload = b"x" * RECORD_BYTES
    latencies = []
    for _ in range(records // size):
        started = time.perf_counter()
        sends = [await producer.send(topic, payload, partition=0) for _ in range(size)]
        await asyncio.gather(*sends)
        latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(bootstrap: str, records: int, sizes: list[int], repeats: int) -> list[dict]:
    topics = await create(bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()
    results = []
    try:
        for topic in topics.values():  # warm-up: segments, connections
            await rounds(producer, topic, 200, 10)
        for size in sizes:
            per_topic: dict[str, list[list[float]]] = {label: [] for label in topics}
            for repeat in range(repeats):
                order = list(topics.items())
                if repeat % 2:
                    order.reverse()
                for label, topic in order:
                    log(f"round size {size}, {label}, repeat {repeat + 1}")
                    per_topic[label].append(await rounds(producer, topic, records, size))
            for label, runs in per_topic.items():
                latencies = [latency for run in runs for latency in run]
                rates = [size * len(run) / sum(run) for run in runs]
                results.append(
                    {
                        "size": size,
                        "topic": label,
                        "p50_ms": percentile(latencies, 0.5) * 1000,
                        "p99_ms": percentile(latencies, 0.99) * 1000,
                        "records_per_s": statistics.median(rates),
                        "us_per_record": statistics.median(
                            sum(run) / (size * len(run)) * 1e6 for run in runs
                        ),
                    }
                )
    finally:
        await producer.stop()
    return results


def render(results: list[dict], command: str, started: datetime.datetime, loads: tuple) -> str:
    lines = [
        *section_head(
            START_MARKER,
            "## The log's durability: what fsync on every write costs (local broker)",
            command,
            started,
            machine(),
            loads,
        ),
        "One Kafka broker of its own, two topics that differ only in `flush.messages`, the "
        f"engine's producer settings (acks=all, idempotent, linger 0), {RECORD_BYTES}-byte "
        "records sent a round at a time (all sends queued, then all acks awaited), the two "
        "topics alternating; medians of the repeats.",
        "",
        "| records per round | topic | round p50 ms | round p99 ms | records/s | µs per record |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['size']} | {row['topic']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['records_per_s']:,.0f} | {row['us_per_record']:.0f} |"
        )
    lines.append("")
    by_size: dict[int, dict[str, dict]] = {}
    for row in results:
        by_size.setdefault(row["size"], {})[row["topic"]] = row
    default, fsync = list(TOPICS)
    costs = [
        f"{size} per round: +{rows[fsync]['us_per_record'] - rows[default]['us_per_record']:.0f} "
        f"µs per order ({rows[fsync]['records_per_s'] / rows[default]['records_per_s']:.2f}× "
        "the records/s)"
        for size, rows in sorted(by_size.items())
    ]
    lines.append("**Cost of fsync on every write**: " + "; ".join(costs) + ".")
    lines.append("")
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records per run (3000)")
    parser.add_argument("--round-sizes", default="1,10,50", help="records per round (1,10,50)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per topic and size (3)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.round_sizes.split(",")]
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    command = "python -m bench.log_durability " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    with tempfile.TemporaryDirectory(prefix="mockex-durability-") as data:
        port, controller = processes.free_port(), processes.free_port()
        broker = processes.start_kafka(port, controller, Path(data) / "kafka")
        try:
            results = asyncio.run(measure(f"127.0.0.1:{port}", args.records, sizes, args.repeats))
        finally:
            broker.stop()
    section = render(results, command.strip(), started, (load_at_start, load_average()))
    write_section(section, args.out, START_MARKER, END_MARKER)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
