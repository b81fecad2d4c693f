"""bench.fanout_bench's pure parts: timestamps, rates, shares, step verdicts, the table."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.fanout_bench import (
    END_MARKER,
    StepResult,
    cpu_groups,
    highest_held,
    json_timestamp_ns,
    order_rate,
    render_section,
    rfc3339_ns,
    shares,
)

NOW_NS = 1_700_000_000_123_456_789
"""2023-11-14T22:13:20.123456789Z"""


def step(
    p99_ms: float = 10.0, counts: list[int] | None = None, subscribers: int = 4, **fields
) -> StepResult:
    return StepResult(
        target_events=20,
        orders_per_second=13,
        seconds=2.0,
        subscribers=subscribers,
        counts=[40] * subscribers if counts is None else counts,
        expected=40,
        latencies_ms=sorted([1.0] * 98 + [p99_ms] * 2),
        **fields,
    )


def test_rfc3339_with_nanoseconds_and_shorter_fractions() -> None:
    cache: dict[str, int] = {}
    assert rfc3339_ns("2023-11-14T22:13:20.123456789Z", cache) == NOW_NS
    assert rfc3339_ns("2023-11-14T22:13:20.5Z", cache) == 1_700_000_000_500_000_000
    assert rfc3339_ns("2023-11-14T22:13:20Z", cache) == 1_700_000_000_000_000_000
    assert cache == {"2023-11-14T22:13:20": 1_700_000_000}


def test_the_timestamp_is_found_in_a_websocket_message_without_parsing_it() -> None:
    text = (
        '{"type":"trade","tradeId":"E2E-1","price":100.5,"quantity":2,'
        '"timestamp":"2023-11-14T22:13:20.123456789Z","sequence":7}'
    )
    assert json_timestamp_ns(text, {}) == NOW_NS
    assert json_timestamp_ns('{"type":"book","symbol":"E2E"}', {}) is None


def test_order_rate_makes_the_target_event_rate_at_least_one_order() -> None:
    assert order_rate(100, 2.0) == 50
    assert order_rate(20, 1.59) == 13
    assert order_rate(1, 4.0) == 1
    with pytest.raises(ValueError, match="events per order"):
        order_rate(20, 0)


def test_shares_split_subscribers_over_processes() -> None:
    assert shares(1000, 2) == [500, 500]
    assert shares(5, 3) == [2, 2, 1]
    assert shares(1, 2) == [1, 0]


def test_held_needs_the_p99_every_subscriber_and_every_event() -> None:
    assert step(p99_ms=50.0).held(50.0)
    assert not step(p99_ms=51.0).held(50.0)
    assert not step(counts=[40, 40, 39, 40]).held(50.0)
    assert step(counts=[40, 40, 39, 40]).short == 1
    assert not step(counts=[40, 40, 40]).held(50.0)  # one of four is gone
    assert not step(dropped=Counter({"closed 4408": 1})).held(50.0)


def test_cpu_per_message_and_groups() -> None:
    measured = step(cpu={"stream": 0.5}, wall=4.0)
    assert measured.cpu_us_per_message("stream") == pytest.approx(0.5 * 4.0 / 160 * 1e6)
    assert math.isnan(step(counts=[0, 0, 0, 0]).cpu_us_per_message("stream"))
    assert cpu_groups({"ws-0": 0.2, "ws-1": 0.3, "grpc-0": 0.1, "stream": 0.4}) == {
        "ws": 0.5,
        "grpc": 0.1,
        "stream": 0.4,
    }


def test_the_section_names_the_highest_rate_held_and_ends_with_its_marker() -> None:
    slow = step(p99_ms=80.0)
    slow.target_events = 50
    steps = [step(cpu={"stream": 0.2}, wall=2.0), slow]
    assert highest_held(steps, 50.0) is steps[0]
    section = render_section(["<!-- head -->"], steps, 50.0, 2, 2, 1.6, 1.2)
    assert "Highest event rate held: 20 events/s" in section
    assert "| 20 | 13 | 20.0 | 4 of 4 |" in section
    assert "NOT held" in section
    assert section.rstrip().endswith(END_MARKER)
    assert "No rate held" in render_section([], [slow], 50.0, 2, 2, 1.6, 1.2)
