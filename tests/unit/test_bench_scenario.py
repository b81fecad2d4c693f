"""The scenario-load bench's section (bench/scenario_load.py) from measured figures."""

from __future__ import annotations

import argparse

from bench.scenario_load import END_MARKER, START_MARKER, section


def test_the_section_totals_kinds_and_divides_cpu_by_bot_messages() -> None:
    result = {
        "up": 9.5,
        "first_trades": 1.5,
        "wall": 100.0,
        "kinds": {
            "market_maker": {"bots": 4, "orders": 6.0, "cancels": 6.0},
            "noise": {"bots": 24, "orders": 3.0, "cancels": 1.0},
        },
        "records": 17.0,
        "cores": {"engine": 0.032, "gateway": 0.064, "machine": 0.9},
        "rejected": {"POSITION_LIMIT": 2},
        "skipped": {},
        "clock": (30.0, 130.0),
    }
    args = argparse.Namespace(scenario="default", warmup=30.0)
    text = section(args, result, "python -m bench.scenario_load", ("1 / 1 / 1", "2 / 1 / 1"))
    assert text.startswith(START_MARKER) and text.rstrip().endswith(END_MARKER)
    assert "| **all** | **28** | **9.00** | **7.00** |" in text
    assert "| gateway | 0.064 | 4.00 |" in text and "| engine | 0.032 | 2.00 |" in text
    assert "| **all processes** | **0.096** | **6.00** |" in text
    assert "refused in the window: POSITION_LIMIT 2" in text
    assert "skipped" not in text.split("refused")[1]
