"""The soak benchmark's pure parts: the rate it takes from BENCHMARKS.md, /proc parsing, Redis
key kinds and the verdicts."""

from __future__ import annotations

from bench.e2e_bench import END_MARKER as E2E_END
from bench.e2e_bench import START_MARKER as E2E_START
from bench.soak_bench import (
    END_MARKER,
    START_MARKER,
    Sample,
    held_unary_rate,
    key_family,
    process_verdicts,
    redis_verdict,
    render_section,
    vm_rss_kib,
)


def sample(at: float, engine: int, used: int, expires: int = 0) -> Sample:
    return Sample(at, {"engine": engine}, used, expires + 10, expires)


def test_the_rate_held_comes_from_the_end_to_end_section_only() -> None:
    text = (
        "Highest rate held with p99 ≤ 20 ms: 250 orders/s\n"  # another section's
        f"{E2E_START}\n**Highest rate held with p99 ≤ 20 ms: 1,600 orders/s** (achieved)\n"
        f"{E2E_END}\n"
    )
    assert held_unary_rate(text) == 1600


def test_the_unary_ladder_is_read_not_the_echo_before_it() -> None:
    text = (
        f"{E2E_START}\n**Bare grpc.aio echo**\n\nHighest rate held with p99 ≤ 20 ms: **2,000/s**\n"
        "**Unary `PlaceOrder`, 1 gateway process**\n\n"
        f"Highest rate held with p99 ≤ 20 ms: **700/s** (achieved 699/s)\n{E2E_END}"
    )
    assert held_unary_rate(text) == 700


def test_no_end_to_end_section_means_no_rate() -> None:
    assert held_unary_rate("# Benchmarks\n") is None


def test_vm_rss_is_read_in_kib_and_a_zombie_has_none() -> None:
    assert vm_rss_kib("Name:\tpython\nVmRSS:\t  53248 kB\nThreads:\t4\n") == 53248
    assert vm_rss_kib("Name:\tpython\nState:\tZ (zombie)\n") is None


def test_keys_are_grouped_by_kind() -> None:
    assert key_family("exchange:v1:order:abc123") == "exchange:v1:order:*"
    assert key_family("exchange:v1:client-order:u1:c9") == "exchange:v1:client-order:*"
    assert key_family("exchange:v1:accounts") == "exchange:v1:accounts"


def test_growth_compares_a_minute_after_the_warm_up_with_the_last_minute() -> None:
    samples = [sample(0, 50_000, 1), sample(60, 100_000, 1), sample(90, 100_000, 1)]
    samples += [sample(205, 108_000, 1), sample(230, 130_000, 1), sample(260, 109_000, 1)]
    (engine,) = process_verdicts(samples, warmup_s=60)
    # The burst at 230 s is the peak, not the end: the last minute's median is 109,000.
    assert (engine.warm_kib, engine.end_kib, engine.peak_kib) == (100_000, 109_000, 130_000)
    assert engine.flat
    samples.append(sample(280, 111_000, 1))
    assert not process_verdicts(samples, warmup_s=60)[0].flat


def test_redis_growth_from_expiring_keys_is_bounded_and_the_rest_is_not() -> None:
    # 1,000,000 bytes more: 1000 new expiring keys of 300 bytes each, and 700,000 else.
    samples = [sample(0, 0, 1_000_000), sample(60, 0, 2_000_000, expires=1000)]
    grown = redis_verdict(samples, 0, freed=600_000, deleted=2000)
    assert grown.expiring_key_bytes == 300
    assert round(grown.untimed_growth, 2) == 0.70
    assert not grown.bounded
    samples = [sample(0, 0, 1_000_000), sample(60, 0, 1_350_000, expires=1000)]
    assert redis_verdict(samples, 0, freed=600_000, deleted=2000).bounded


def test_the_section_has_its_markers_a_row_per_process_and_the_verdict() -> None:
    samples = [sample(0, 100_000, 1_000_000), sample(60, 100_000, 1_000_000)]
    samples += [Sample(120, {"engine": 100_000, "redis": 200_000}, 1_000_000, 10, 0)]
    samples[0].rss_kib["redis"] = 100_000
    section = render_section(
        [START_MARKER, "## Soak"],
        {"Load": "1/s"},
        [],
        samples,
        0,
        {},
        (0, 0),
        {"engine": 0.5},
        [],
        3600,
    )
    assert section.startswith(START_MARKER) and section.rstrip().endswith(END_MARKER)
    assert "| engine | 97.7 | 97.7 | 97.7 | +0.0% | 0.500 | flat |" in section
    assert "| redis | 97.7 | 195.3 | 195.3 | +100.0% | - | see Redis below |" in section
    assert "**Verdict: met**" in section
