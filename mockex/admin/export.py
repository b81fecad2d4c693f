"""`export DIR`: the event's results as files an organizer can publish or open in a spreadsheet.

DIR/results.json (the whole GetResults answer, in the REST API's JSON form), DIR/results.csv
(one line per participant and round, and one for each participant's total) and, per
participant, DIR/reports/<user>.json and .csv with their own lines only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from exchange.v1 import admin_pb2, reports_pb2

FIGURES = (
    "orders",
    "trades",
    "volume",
    "notional",
    "starting_equity",
    "ending_equity",
    "pnl",
    "cumulative_pnl",
    "max_drawdown",
    "sharpe",
    "fees_paid",
    "conversions",
    "limit_breaches",
)
COLUMNS = ("rank", "user_id", "round", "started_at", "ended_at", *FIGURES, "rejected_orders")
"""Then one `rejected_<REASON>` column per reason that occurs in the file."""
TOTAL = "total"
"""The `round` column of a participant's line for the whole event."""


def as_json(message: Message) -> str:
    """The REST form: lowerCamelCase names, zeros included."""
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return json.dumps(data, indent=2) + "\n"


def _time(report: reports_pb2.RoundReport, name: str) -> str:
    if not report.HasField(name):
        return ""
    return getattr(report, name).ToJsonString()


def csv_lines(reports: Iterable[reports_pb2.ParticipantReport]) -> str:
    """Each participant's rounds in the order played, then their total."""
    lines, reasons = [], set()
    for report in reports:
        rounds = list(report.rounds)
        if report.HasField("total"):
            rounds.append(report.total)
        for figures in rounds:
            line = {
                "rank": report.rank,
                "user_id": report.user_id,
                "round": figures.round or TOTAL,
                "started_at": _time(figures, "started_at"),
                "ended_at": _time(figures, "ended_at"),
                **{name: _number(getattr(figures, name)) for name in FIGURES},
                "rejected_orders": sum(figures.rejected_orders.values()),
            }
            for reason, count in figures.rejected_orders.items():
                line[f"rejected_{reason}"] = count
                reasons.add(f"rejected_{reason}")
            lines.append(line)
    text = io.StringIO()
    writer = csv.DictWriter(text, [*COLUMNS, *sorted(reasons)], restval=0, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return text.getvalue()


def _number(value: float | int) -> float | int:
    """Whole numbers without a decimal point (volume is a double in the API)."""
    return int(value) if float(value).is_integer() else value


def write_results(directory: Path, results: admin_pb2.GetResultsResponse) -> list[Path]:
    """Every file of the export (the directory is created; files of an earlier export are
    replaced); returns the paths written."""
    reports_dir = directory / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    written = [directory / "results.json", directory / "results.csv"]
    written[0].write_text(as_json(results))
    written[1].write_text(csv_lines(results.reports))
    for report in results.reports:
        own = reports_dir / f"{report.user_id}.json"
        own.write_text(as_json(report))
        own_csv = reports_dir / f"{report.user_id}.csv"
        own_csv.write_text(csv_lines([report]))
        written += [own, own_csv]
    return written
