"""The end-to-end benchmark's pure parts: the open-loop schedule, the order mix, the statistics,
the interleaved ladders, the goals' verdicts, the /proc parsing, the REST client's framing and the
markdown it writes. Nothing here is timed."""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from bench import e2e_bench, rest_client
from bench.e2e_bench import (
    CANCEL,
    ECHO,
    END_MARKER,
    MID_TICKS,
    PLACE,
    REST,
    SCALE,
    START_MARKER,
    STATUS_DEADLINE_EXCEEDED,
    STATUS_FAILED_PRECONDITION,
    STATUS_OK,
    UNARY,
    ClientRecords,
    OrderFlow,
    OrderMix,
    OrderSpec,
    StepResult,
    better,
    bisect_rate,
    cpu_per_order_ms,
    flat_profile_rows,
    goal_rows,
    highest_held,
    idle_share,
    limit_analysis,
    machine_busy_ticks,
    parse_parts,
    parse_rates,
    percentile,
    ratio_verdict,
    relevant_process,
    render_section,
    rest_place_body,
    scale_table,
    send_offsets,
    stat_comm,
    stat_ticks,
    step_ladders,
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
    assert "the busiest process, the gateway, carries at most 833/s" in reading
    assert "load-generator processes used at most 0.20 cores each: not the bottleneck" in reading


def test_a_saturated_load_generator_is_named_in_the_reading() -> None:
    step = step_result(1000, 80.0, cpu={"echo": 0.6, "client-0": 0.93, "machine": 1.6})
    assert "A load-generator process ran at 0.93 cores" in limit_analysis(step, 2)


def test_section_is_written_between_its_markers_only(tmp_path: Path) -> None:
    steps = [
        step_result(500, 8.0, cpu={"gateway": 0.5, "engine": 0.2, "machine": 1.0}, ladder=UNARY),
        step_result(1000, 40.0, achieved=900, cpu={"gateway": 0.95, "machine": 1.9}, ladder=UNARY),
        step_result(1000, 5.0, cpu={"echo": 0.4, "client-0": 0.3, "machine": 0.8}, ladder=ECHO),
        step_result(2000, 30.0, cpu={"echo": 0.9, "client-0": 0.5, "machine": 1.5}, ladder=ECHO),
        step_result(250, 9.0, cpu={"envoy": 0.1, "gateway": 0.3, "machine": 0.6}, ladder=REST),
        step_result(500, 25.0, cpu={"envoy": 0.2, "gateway": 0.5, "machine": 0.9}, ladder=REST),
    ]
    section = render_section(
        command="python -m bench.e2e_bench",
        started=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC),
        loads=("1.0 / 1.0 / 1.0", "2.0 / 1.0 / 1.0"),
        machine={"CPU": "test"},
        settings={"Step": "10 s"},
        steps=steps,
        p99_ms=20.0,
        profiled=None,
        profiles={},
        threads={},
        floor={"Redis PING": (0.1, 0.3)},
    )
    assert section.startswith(START_MARKER) and section.endswith(END_MARKER + "\n")
    assert "→ answer; against a bare gRPC echo, REST through Envoy\n" in section
    assert "| 500 | 500 | 5,000 | 2.7 | 8.0 | 12.0 | 16.0 | 0 | 0 | 0 | 0.5 | 0.0 | yes |" in (
        section
    )
    assert (
        "unary 500/s ÷ echo 1,000/s = **0.50×** | **met** (≥ 0.5×); the 0.8× goal **NOT met**"
        in (section)
    )
    assert "REST 250/s ÷ unary 500/s = **0.50×** | **met** |" in section
    assert "Highest rate held with p99 ≤ 20 ms: **1,000/s**" in section  # the echo
    assert "Redis PING 0.10 / 0.30" in section
    assert "**What limits the rate**" in section
    assert "- *unary*: At 1,000/s offered (900/s achieved)" in section
    # The echo ladder's reading leaves out the exchange's idle processes.
    echo_reading = next(line for line in section.splitlines() if line.startswith("- *echo*"))
    assert "gateway" not in echo_reading and "echo 0.90" in echo_reading
    assert "| unary | 500 |" in section and "| REST | 500 |" in section

    path = tmp_path / "BENCHMARKS.md"
    engine = f"{ENGINE_START}\nengine figures\n{ENGINE_END}\n"
    path.write_text(f"# Benchmarks\n\n{engine}\nnotes\n")
    write_section(section, path, START_MARKER, END_MARKER)
    write_section(section.replace("2026-01-02", "2026-02-03"), path, START_MARKER, END_MARKER)
    text = path.read_text()
    assert text.count(START_MARKER) == 1 and "2026-02-03" in text and "2026-01-02" not in text
    assert text.startswith(f"# Benchmarks\n\n{engine}\nnotes\n")


def test_the_scenario_section_reports_the_unary_rate_alone() -> None:
    section = render_section(
        command="python -m bench.e2e_bench --scenario default",
        started=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC),
        loads=("1", "1"),
        machine={},
        settings={},
        steps=[step_result(250, 9.0, ladder=UNARY), step_result(500, 30.0, ladder=UNARY)],
        p99_ms=20.0,
        profiled=None,
        profiles={},
        threads={},
        scenario="default",
    )
    assert section.startswith("<!-- e2e-bench-default:start -->")
    assert (
        "**Unary `PlaceOrder` held with the `default` scenario's bots trading: 250 orders/s**"
        in (section)
    )
    assert "| Goal (issue 10) |" not in section


def test_default_mix_is_the_issue_s() -> None:
    mix = OrderMix()
    assert (mix.cancel_share, mix.ioc_share, mix.max_quantity) == (0.0, 0.70, 20)
    flow = OrderFlow(11, 64, mix)
    orders = [flow.next(collections.deque([(0, "resting")])) for _ in range(20_000)]
    assert all(order.kind == PLACE for order in orders)  # no cancels even with resting orders
    offsets = {abs(order.price_ticks - MID_TICKS) for order in orders}
    assert offsets == set(range(5))  # within ±4 ticks of the mid
    assert {order.quantity for order in orders} == set(range(1, 21))
    assert {order.user for order in orders} == set(range(64))
    ioc = sum(order.tif == "IOC" for order in orders) / len(orders)
    assert 0.68 < ioc < 0.72
    assert "70% IOC / 30% GFD, qty 1–20; no cancels" in mix.describe()


def test_rest_body_is_the_spec_s_camel_case_json() -> None:
    spec = OrderSpec(PLACE, 3, side="SELL", price_ticks=9_997, quantity=12, tif="IOC")
    assert json.loads(rest_place_body(spec, "E2E")) == {
        "symbol": "E2E",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "IOC",
        "quantity": 12,
        "price": 99.97,
    }


def test_ladders_are_interleaved_and_stop_on_their_own() -> None:
    capacity = {ECHO: 2000, UNARY: 500}
    calls: list[tuple[str, int]] = []

    def measure(ladder: str, rate: int, note: str) -> StepResult:
        calls.append((ladder, rate))
        return step_result(rate, 5.0 if rate <= capacity[ladder] else 500.0, ladder=ladder)

    step_ladders([250, 500, 1000, 2000, 4000], [ECHO, UNARY], measure, 20.0, 100.0, refine=2)
    assert calls[:6] == [
        (ECHO, 250),
        (UNARY, 250),
        (UNARY, 500),
        (ECHO, 500),
        (ECHO, 1000),
        (UNARY, 1000),  # not carried: the unary ladder stops here
    ]
    assert calls[6:8] == [(ECHO, 2000), (ECHO, 4000)]
    # Bisection rounds, one step per ladder each, the order alternating.
    assert calls[8:] == [(ECHO, 3000), (UNARY, 750), (UNARY, 600), (ECHO, 2500)]


def test_ratio_verdicts() -> None:
    echo, unary = step_result(2000, 5), step_result(1000, 5)
    assert ratio_verdict(unary, echo, 0.5, 0.8) == (
        0.5,
        "**met** (≥ 0.5×); the 0.8× goal **NOT met**",
    )
    assert ratio_verdict(step_result(1600, 5), echo, 0.5, 0.8) == (
        0.8,
        "**met**, the 0.8× goal too",
    )
    assert ratio_verdict(step_result(200, 5), echo, 0.5, 0.8) == (0.1, "**NOT met** (needs ≥ 0.5×)")
    assert ratio_verdict(None, echo, 0.5)[1].startswith("**NOT met** (no rate held")
    assert ratio_verdict(unary, None, 0.5) == (None, "not measured: the baseline held no rate")


def test_goal_rows_say_each_goal_figure_and_verdict() -> None:
    best = {
        ECHO: step_result(8000, 5),
        UNARY: step_result(600, 5),
        REST: step_result(250, 5),
        SCALE: step_result(900, 5),
    }
    rows = "\n".join(goal_rows(best, 2, shared_port=False, top_rate=8000))
    assert "unary 600/s ÷ echo 8,000/s = **0.07×** (the echo held the top rate offered" in rows
    assert "REST 250/s ÷ unary 600/s = **0.42×** | **NOT met** (needs ≥ 0.5×) |" in rows
    assert "1: 600/s, 2: 900/s (**1.50×**)" in rows
    assert "sharing one port **NOT met** yet" in rows
    shared = "\n".join(goal_rows(best, 2, shared_port=True, top_rate=10000))
    assert "sharing one port (SO_REUSEPORT)" in shared and "top rate" not in shared


def test_scale_table_gives_cpu_per_order_per_gateway_process() -> None:
    one = step_result(500, 10, cpu={"gateway": 0.45, "engine": 0.1, "client-0": 0.1}, ladder=UNARY)
    two = step_result(
        1000,
        12,
        cpu={"gateway": 0.5, "gateway2": 0.5, "engine": 0.2, "envoy": 0.01},
        ladder=SCALE,
    )
    table = scale_table({UNARY: (one, True), SCALE: (two, True)}, 2)
    assert table[0].startswith("| gateway processes | held orders/s | p99 ms | engine ms |")
    assert "envoy" not in table[0]
    assert table[2] == "| 1 | 500 | 10.0 | 0.200 | 0.900 | - | 0.200 | 1.100 | 0.55 |"
    assert table[3] == "| 2 | 1,000 | 12.0 | 0.200 | 0.500 | 0.500 | - | 1.200 | 1.20 |"
    failed = replace(two, p99_ms=40.0, achieved=800.0)
    row = scale_table({UNARY: (one, True), SCALE: (failed, False)}, 2)[3]
    assert row.startswith("| 2 | none held (busiest step: 1,000 offered, 800 achieved) | 40.0 |")


def test_figures_fall_back_to_the_busiest_step_of_a_ladder_that_held_none() -> None:
    steps = [
        step_result(250, 5, ladder=UNARY),
        step_result(500, 30, ladder=UNARY),
        step_result(100, 30, ladder=REST),
        step_result(250, 60, achieved=240, ladder=REST),
    ]
    figures = e2e_bench.ladder_figures(steps, 20.0)
    assert figures[UNARY] == (steps[0], True)
    assert figures[REST] == (steps[3], False)


def test_which_processes_count_for_which_ladder() -> None:
    assert relevant_process(ECHO, "echo") and relevant_process(ECHO, "client-1")
    assert not relevant_process(ECHO, "gateway") and not relevant_process(UNARY, "echo")
    assert relevant_process(REST, "envoy") and not relevant_process(UNARY, "envoy")
    assert relevant_process(SCALE, "gateway2")


def test_parts() -> None:
    assert parse_parts("", "") == [ECHO, UNARY, REST, SCALE]
    assert parse_parts("", "default") == [UNARY]
    assert parse_parts("rest, unary", "") == [UNARY, REST]
    with pytest.raises(ValueError, match="valid values are echo, unary, rest, gateways"):
        parse_parts("grpc", "")


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_http_response_framing() -> None:
    async def read(data: bytes):
        return await rest_client.read_response(_reader(data))

    head, body = asyncio.run(
        read(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
    )
    assert (head.status, head.keep_alive, body) == (200, True, b"{}")
    chunked = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"co\r\n5;ext=1\r\nde":3\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n'
    )
    head, body = asyncio.run(read(chunked))
    assert (head.status, head.chunked, body) == (400, True, b'{"code":3}')
    head, body = asyncio.run(read(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
    assert (head.status, head.keep_alive, body) == (204, False, b"")
    with pytest.raises(ValueError):
        rest_client.parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_http_request_and_error_bodies() -> None:
    data = rest_client.request_bytes("POST", "/order/place", "h:1", {"X-API-Key": "k"}, b"{}")
    assert data == (
        b"POST /order/place HTTP/1.1\r\nHost: h:1\r\nX-API-Key: k\r\nContent-Length: 2\r\n\r\n{}"
    )
    body = b'{"code": 8, "message": "rate limit", "details": []}'
    assert rest_client.error_code(body) == (8, "rate limit")
    assert rest_client.error_code(b"upstream connect error") == (None, "upstream connect error")


def test_connection_pool_keeps_connections_alive() -> None:
    """Against a real local HTTP/1.1 server: sequential requests reuse one connection, requests
    in flight together open more, a `Connection: close` answer is not reused."""

    async def scenario() -> tuple[list[int], int, int, int]:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                await asyncio.sleep(0.01)
                close = body == b"close"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\nok"
                )
                await writer.drain()
                if close:
                    break
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = rest_client.ConnectionPool("127.0.0.1", port, max_connections=3)
        request = rest_client.request_bytes("POST", "/", "x", {}, b"{}")
        statuses = [(await pool.request(request, 5))[0] for _ in range(5)]
        sequential = pool.opened
        await asyncio.gather(*(pool.request(request, 5) for _ in range(6)))
        together = pool.opened
        await pool.request(rest_client.request_bytes("POST", "/", "x", {}, b"close"), 5)
        open_after_close = pool.open
        await pool.close()
        server.close()
        await server.wait_closed()
        return statuses, sequential, together, open_after_close

    statuses, sequential, together, open_after_close = asyncio.run(scenario())
    assert statuses == [200] * 5
    assert sequential == 1
    assert together == 3  # bounded by max_connections: the others waited for one
    assert open_after_close == 2


def test_module_runs_as_documented() -> None:
    assert e2e_bench.__doc__ and "python -m bench.e2e_bench" in e2e_bench.__doc__


def test_envoy_connection_and_request_counts() -> None:
    stats = "http.edge.downstream_cx_total: 32\nhttp.edge.downstream_rq_total: 12000\n"
    assert e2e_bench.envoy_downstream(stats) == (32, 12000)
    assert e2e_bench.envoy_downstream("") == (0, 0)
