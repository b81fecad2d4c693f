"""The end-to-end benchmark's pure parts: the open-loop schedule, the order mix, the statistics,
the /proc parsing and the markdown it writes. Nothing here is timed."""

from __future__ import annotations

import collections
import datetime
import math
from pathlib import Path

import pytest

from bench import e2e_bench
from bench.e2e_bench import (
    CANCEL,
    END_MARKER,
    MID_TICKS,
    PLACE,
    START_MARKER,
    STATUS_DEADLINE_EXCEEDED,
    STATUS_FAILED_PRECONDITION,
    STATUS_OK,
    ClientRecords,
    OrderFlow,
    OrderMix,
    StepResult,
    better,
    bisect_rate,
    cpu_per_order_ms,
    flat_profile_rows,
    highest_held,
    idle_share,
    limit_analysis,
    machine_busy_ticks,
    parse_rates,
    percentile,
    render_section,
    send_offsets,
    stat_comm,
    stat_ticks,
    summarize,
)
from bench.run_all import END_MARKER as ENGINE_END
from bench.run_all import START_MARKER as ENGINE_START
from bench.run_all import write_section


@pytest.mark.parametrize("rate,seconds,clients", [(1000, 10, 2), (250, 3, 3), (7, 2, 4)])
def test_clients_together_send_evenly_at_the_offered_rate(rate, seconds, clients) -> None:
    offsets = sorted(
        offset
        for client in range(clients)
        for offset in send_offsets(rate, seconds, client, clients)
    )
    assert len(offsets) == rate * seconds
    assert offsets == pytest.approx([k / rate for k in range(rate * seconds)])
    assert all(0 <= offset < seconds for offset in offsets)


def test_each_client_sends_at_fixed_intervals() -> None:
    offsets = send_offsets(1000, 1, 1, 4)
    gaps = {round(b - a, 9) for a, b in zip(offsets, offsets[1:], strict=False)}
    assert gaps == {0.004}
    assert offsets[0] == pytest.approx(0.001)


def test_no_rate_no_sends() -> None:
    assert send_offsets(0, 10, 0, 2) == []
    assert send_offsets(100, 0, 0, 2) == []


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    thousand = list(range(1000))
    assert percentile(thousand, 99.9) == 998
    assert percentile([5.0], 99.9) == 5.0
    assert math.isnan(percentile([], 50))


def records(start: float, rows: list[tuple[float, float, int, int]]) -> ClientRecords:
    """rows: (due offset, latency, status, kind), sent exactly when due."""
    return ClientRecords(
        start=start,
        due=[start + due for due, _, _, _ in rows],
        sent=[start + due for due, _, _, _ in rows],
        acked=[start + due + latency for due, latency, _, _ in rows],
        status=[status for _, _, status, _ in rows],
        kind=[kind for _, _, _, kind in rows],
    )


def test_summary_counts_answers_timeouts_and_errors_apart() -> None:
    first = records(
        100.0,
        [(k * 0.01, 0.002, STATUS_OK, PLACE) for k in range(95)]
        + [(0.95, 0.010, STATUS_FAILED_PRECONDITION, CANCEL)]
        + [(0.96, 0.004, STATUS_OK, CANCEL)],
    )
    second = records(
        100.0,
        [(0.97, 5.0, STATUS_DEADLINE_EXCEEDED, PLACE), (0.98, 0.001, 14, PLACE)]
        + [(0.99, 0.001, STATUS_FAILED_PRECONDITION, PLACE)],
    )
    step = summarize(100, 1.0, [first, second])
    assert step.sent == 100
    assert step.ok == 97  # 96 OK and one cancel refused because the order had finished
    assert step.cancel_too_late == 1
    assert step.timeouts == 1
    assert step.errors == {"UNAVAILABLE": 1, "FAILED_PRECONDITION": 1}
    assert step.p50_ms == pytest.approx(2.0)
    assert step.max_ms == pytest.approx(10.0)
    # The timed-out call answered 5.97 s after the start: the step lasted that long.
    assert step.achieved == pytest.approx(97 / 5.97)
    assert step.drain_s == pytest.approx(4.97)
    assert step.lag_p99_ms == pytest.approx(0.0)
    assert step.cancel_p99_ms == pytest.approx(10.0)


def test_latency_counts_from_the_due_time_not_the_send() -> None:
    late = ClientRecords(
        start=0.0, due=[0.0], sent=[0.050], acked=[0.060], status=[STATUS_OK], kind=[PLACE]
    )
    step = summarize(1, 1.0, [late])
    assert step.p50_ms == pytest.approx(60.0)
    assert step.lag_p99_ms == pytest.approx(50.0)


def step_result(offered: int, p99: float, achieved: float | None = None, **extra) -> StepResult:
    values = dict(
        offered=offered,
        seconds=10.0,
        sent=offered * 10,
        ok=offered * 10,
        achieved=offered if achieved is None else achieved,
        p50_ms=p99 / 3,
        p99_ms=p99,
        p999_ms=p99 * 1.5,
        max_ms=p99 * 2,
        timeouts=0,
        errors={},
        cancel_too_late=0,
        lag_p99_ms=0.5,
        drain_s=0.0,
    )
    values.update(extra)
    return StepResult(**values)


def test_held_needs_p99_rate_and_few_failures() -> None:
    assert step_result(1000, 20.0).held(20)
    assert not step_result(1000, 20.1).held(20)
    assert not step_result(1000, 5.0, achieved=940).held(20)
    assert step_result(1000, 5.0, achieved=950).held(20)
    assert step_result(1000, 5.0, timeouts=10).held(20)  # 0.1% of 10,000
    assert not step_result(1000, 5.0, timeouts=6, errors={"UNAVAILABLE": 5}).held(20)


def test_stepping_stops_past_the_bound_or_well_short_of_the_rate() -> None:
    assert step_result(1000, 90.0).keep_stepping(100)
    assert not step_result(1000, 101.0).keep_stepping(100)
    assert not step_result(1000, 5.0, achieved=790).keep_stepping(100)


def test_highest_held_is_below_the_first_rate_not_held() -> None:
    steps = [
        step_result(250, 5),
        step_result(500, 8),
        step_result(1000, 30),
        step_result(2000, 15),  # held above a failure: luck, not capacity
        step_result(750, 12),
        step_result(1000, 3, label="profiled"),
    ]
    assert highest_held(steps, 20).offered == 750
    assert highest_held([step_result(250, 25)], 20) is None


def test_bisect_and_better() -> None:
    assert bisect_rate(1000, 2000) == 1500
    assert bisect_rate(1000, 1100) == 1050
    assert bisect_rate(1000, 1050) is None
    held, failed = step_result(500, 15), step_result(500, 40)
    assert better(failed, held, 20) is held
    assert better(step_result(500, 30), step_result(500, 25), 20).p99_ms == 25


def test_parse_rates_sorts_and_dedupes() -> None:
    assert parse_rates("1000, 250,500,250") == [250, 500, 1000]
    with pytest.raises(ValueError):
        parse_rates("0,100")


def test_order_flow_is_seeded_and_stays_around_the_mid() -> None:
    mix = OrderMix(cancel_share=0.0, cross_ticks=2, passive_ticks=6)
    first = [OrderFlow(3, 8, mix).next(collections.deque()) for _ in range(1)]
    flow_a, flow_b = OrderFlow(3, 8, mix), OrderFlow(3, 8, mix)
    orders = [flow_a.next(collections.deque()) for _ in range(2000)]
    assert orders == [flow_b.next(collections.deque()) for _ in range(2000)]
    assert first[0] == orders[0]
    assert all(order.kind == PLACE for order in orders)
    for order in orders:
        k = order.price_ticks - MID_TICKS if order.side == "BUY" else MID_TICKS - order.price_ticks
        assert -6 <= k <= 2
        assert 1 <= order.quantity <= mix.max_quantity
        assert 0 <= order.user < 8
    crossing = sum(
        (order.price_ticks > MID_TICKS) if order.side == "BUY" else (order.price_ticks < MID_TICKS)
        for order in orders
    )
    assert 0.1 < crossing / len(orders) < 0.35  # k in {1, 2} of 9 values
    assert {order.tif for order in orders} == {"GFD", "IOC"}


def test_cancels_take_the_oldest_resting_order_of_its_user() -> None:
    flow = OrderFlow(1, 4, OrderMix(cancel_share=1.0))
    resting = collections.deque([(2, "o1"), (3, "o2")])
    cancel = flow.next(resting)
    assert (cancel.kind, cancel.user, cancel.order_id) == (CANCEL, 2, "o1")
    assert list(resting) == [(3, "o2")]
    assert flow.next(collections.deque()).kind == PLACE  # nothing to cancel: place


def test_proc_stat_parsing() -> None:
    line = "4242 (python -u (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2"
    assert stat_ticks(line) == 325
    assert stat_comm(line) == "python -u (x)"
    busy, total = machine_busy_ticks("cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert (busy, total) == (155, 1000)


FLAT_PROFILE = """
  _     ._   __/__   _ _  _  _ _/_   Recorded: 12:23:43  Samples:  1838
 /_//_/// /_\\ / //_// / //_'/ //     Duration: 3.495     CPU time: 1.382
/   _/                      v5.1.3

Profile at /somewhere/bench/profiled_service.py:66

54.2% epoll.poll  <built-in>
24.1% [self]  asyncio/base_events.py
7.6% Context.run  <built-in>
0.6% EpollSelector.select  selectors.py:451
"""


def test_flat_profile_reading() -> None:
    header, rows = flat_profile_rows(FLAT_PROFILE, rows=2)
    assert "Duration: 3.495" in header
    assert rows == ["54.2% epoll.poll  <built-in>", "24.1% [self]  asyncio/base_events.py"]
    assert idle_share(FLAT_PROFILE) == pytest.approx(0.548)
    assert idle_share("1.0% foo  bar.py:1") is None


TREE_PROFILE = """
Profile at /somewhere/bench/profiled_service.py:66

100.0% main  bench/profiled_service.py:28
`- 100.0% run_module  <frozen runpy>:201
            `- 100.0% run  asyncio/runners.py:160
                  [17 frames hidden]  asyncio, redis
                     69.5% Handle._run  asyncio/events.py:78
                     `- 55.7% EngineApp._run_loop  engine_svc/app.py:200
                     29.6% epoll.poll  <built-in>
"""


def test_tree_starts_below_asyncio_run() -> None:
    assert e2e_bench.tree_rows(TREE_PROFILE) == [
        "[17 frames hidden]  asyncio, redis",
        "   69.5% Handle._run  asyncio/events.py:78",
        "   `- 55.7% EngineApp._run_loop  engine_svc/app.py:200",
        "   29.6% epoll.poll  <built-in>",
    ]


def test_cpu_per_order_and_the_limit_reading() -> None:
    step = step_result(
        1000,
        80.0,
        achieved=800,
        cpu={"gateway": 0.96, "engine": 0.4, "client-0": 0.2, "client-1": 0.2, "machine": 1.98},
    )
    per_order = cpu_per_order_ms(step)
    assert per_order["gateway"] == pytest.approx(1.2)
    assert per_order["clients"] == pytest.approx(0.5)
    reading = limit_analysis(step, 2)
    assert "gateway ran at about one full core" in reading
    assert "The machine was saturated" in reading
    assert "the busiest service, the gateway, carries at most 833/s" in reading


def test_section_is_written_between_its_markers_only(tmp_path: Path) -> None:
    steps = [
        step_result(500, 8.0, cpu={"gateway": 0.5, "engine": 0.2, "machine": 1.0}),
        step_result(1000, 40.0, achieved=900, cpu={"gateway": 0.95, "machine": 1.9}),
    ]
    section = render_section(
        command="python -m bench.e2e_bench",
        started=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC),
        loads=("1.0 / 1.0 / 1.0", "2.0 / 1.0 / 1.0"),
        machine={"CPU": "test"},
        settings={"Step": "10 s"},
        steps=steps,
        p99_ms=20.0,
        best=highest_held(steps, 20.0),
        profiled=None,
        profiles={},
        threads={},
        floor={"Redis PING": (0.1, 0.3)},
    )
    assert section.startswith(START_MARKER) and section.endswith(END_MARKER + "\n")
    assert "| 500 | 500 | 5,000 | 2.7 | 8.0 | 12.0 | 16.0 | 0 | 0 | 0 | 0.5 | 0.0 | yes |" in (
        section
    )
    assert "**Highest rate held with p99 ≤ 20 ms: 500 orders/s**" in section
    assert "Goal (10,000/s with p99 ≤ 20 ms): **NOT met**" in section
    assert "Redis PING 0.10 / 0.30" in section
    assert "**What limits the rate**" in section
    assert "At 1,000/s offered (900/s achieved)" in section

    path = tmp_path / "BENCHMARKS.md"
    engine = f"{ENGINE_START}\nengine figures\n{ENGINE_END}\n"
    path.write_text(f"# Benchmarks\n\n{engine}\nnotes\n")
    write_section(section, path, START_MARKER, END_MARKER)
    write_section(section.replace("2026-01-02", "2026-02-03"), path, START_MARKER, END_MARKER)
    text = path.read_text()
    assert text.count(START_MARKER) == 1 and "2026-02-03" in text and "2026-01-02" not in text
    assert text.startswith(f"# Benchmarks\n\n{engine}\nnotes\n")


def test_module_runs_as_documented() -> None:
    assert e2e_bench.__doc__ and "python -m bench.e2e_bench" in e2e_bench.__doc__
