"""The organizer's command line without a server: teams files, the keys file, the export's CSV,
and how a refusal prints (python -m mockex.admin; the real stack: test_reports_admin.py)."""

from __future__ import annotations

import argparse
import io
import os
import stat
from pathlib import Path

import grpc
import pytest

from exchange.v1 import reports_pb2
from mockex.admin import cli, export, teams


def test_a_teams_file_gives_teams_with_their_lines_and_optional_cash():
    parsed = teams.parse_teams("user_id,cash\nalpha,50000\n\n beta ,\n", "teams.csv")
    assert parsed == [teams.Team("alpha", 50_000.0, 2), teams.Team("beta", None, 4)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "teams.csv is empty: the first line must be the header user_id[,cash]"),
        ("team,cash\na,1\n", "teams.csv line 1: the header must be user_id or user_id,cash"),
        ("user_id\n", "teams.csv has a header but no teams"),
        ("user_id,cash\na,1,2\n", "teams.csv line 2: 3 fields, the header has 2"),
        ("user_id,cash\na,lots\n", "teams.csv line 2: cash must be a number, got 'lots'"),
        ("user_id,cash\na,-1\n", "teams.csv line 2: cash must be 0 or more, got '-1'"),
        ("user_id\na\n\na\n", "teams.csv line 4: user_id 'a' is already on line 2"),
    ],
)
def test_a_bad_teams_file_names_the_line_and_what_is_wrong(text: str, message: str):
    with pytest.raises(teams.TeamsFileError, match="^" + message.replace("[", r"\[")):
        teams.parse_teams(text, "teams.csv")


def test_the_keys_file_is_only_its_owners_and_never_overwritten(tmp_path: Path):
    path = tmp_path / "keys.csv"
    umask = os.umask(0)
    try:
        with teams.open_keys_file(path) as keys:
            teams.write_key(keys, "alpha", "mx_secret")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "user_id,api_key\nalpha,mx_secret\n"
    with pytest.raises(FileExistsError):
        teams.open_keys_file(path)


def test_the_csv_has_a_line_per_round_and_the_total_and_a_column_per_reason():
    report = reports_pb2.ParticipantReport(user_id="alpha", rank=1)
    report.rounds.add(round=1, orders=3, volume=20, pnl=12.5, rejected_orders={"X_LIMIT": 2})
    report.total.CopyFrom(reports_pb2.RoundReport(orders=3, volume=20, pnl=12.5))
    lines = export.csv_lines([report]).splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["rejected_orders", "rejected_X_LIMIT"]
    first, total = (dict(zip(header, line.split(","), strict=True)) for line in lines[1:])
    assert (first["round"], first["volume"], first["pnl"], first["rejected_X_LIMIT"]) == (
        "1",
        "20",
        "12.5",
        "2",
    )
    assert (total["round"], total["rejected_orders"], total["rejected_X_LIMIT"]) == (
        "total",
        "0",
        "0",
    )


class Refused(grpc.RpcError):
    """What a stub raises when the gateway refuses a call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_refusal_is_one_line_with_its_status_and_exit_code_1(monkeypatch):
    message = "the simulator (data_svc) does not answer; it loads scenarios"

    def simulator_away(client: cli.AdminClient, args: argparse.Namespace, output: cli.Output):
        raise Refused(grpc.StatusCode.UNAVAILABLE, message)

    monkeypatch.setattr(cli, "list_scenarios", simulator_away)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--admin-key", "k", "--target", "127.0.0.1:1", "scenarios"], out, err)
    assert (code, out.getvalue(), err.getvalue()) == (1, "", f"error: UNAVAILABLE: {message}\n")


def test_without_an_admin_key_nothing_is_called(monkeypatch):
    monkeypatch.delenv("MOCKEX_ADMIN_KEY", raising=False)
    monkeypatch.setenv("MOCKEX_DATA_DIR", "/nonexistent")
    err = io.StringIO()
    assert cli.main(["users"], io.StringIO(), err) == 1
    assert err.getvalue() == "error: no admin key: pass --admin-key or set MOCKEX_ADMIN_KEY\n"


def test_money_shows_cash_units_and_at_least_cents():
    assert [cli.money(value) for value in (5, 0.1, 1.2345, -3.5)] == [
        "5.00",
        "0.10",
        "1.2345",
        "-3.50",
    ]
