"""bench.session_bench: its section of BENCHMARKS.md (the steps themselves are e2e_bench's)."""

from __future__ import annotations

import datetime

from bench.e2e_bench import highest_held
from bench.session_bench import END_MARKER, START_MARKER, render_section
from tests.unit.test_bench_e2e import step_result


def test_the_section_has_the_steps_the_verdict_and_cpu_per_order() -> None:
    steps = [
        step_result(500, 8.0, cpu={"gateway": 0.5, "engine": 0.2, "client-0": 0.1, "machine": 1.0}),
        step_result(1000, 40.0, achieved=900, cpu={"gateway": 0.9, "machine": 1.9}),
    ]
    section = render_section(
        command="python -m bench.session_bench",
        started=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC),
        loads=("1.0 / 1.0 / 1.0", "2.0 / 1.0 / 1.0"),
        machine={"CPU": "test"},
        settings={"Step": "10 s"},
        steps=steps,
        p99_ms=20.0,
        best=highest_held(steps, 20.0),
    )
    assert section.startswith(START_MARKER) and section.endswith(END_MARKER + "\n")
    assert "| 500 | 500 | 5,000 | 2.7 | 8.0 | 12.0 | 16.0 | 0 | 0 | 0 | 0.5 | 0.0 | yes |" in (
        section
    )
    assert "**Highest rate held with p99 ≤ 20 ms: 500 orders/s**" in section
    assert (
        "| 500 | 1.00 | 0.40 | 0.00 | 0.00 | 0.00 | 0.00 | 0.20 | 1.40 | 1.00 | 0.20 |" in section
    )
    assert "| 1,000 | 1.00 | 0.00 |" in section
