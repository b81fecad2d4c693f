"""The teams file of `create-teams` and the keys file it writes: pure parsing, plus the one
careful file creation (only the organizer may read the keys, and nothing is overwritten)."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

COLUMNS = ("user_id", "cash")
KEYS_HEADER = ("user_id", "api_key")


class TeamsFileError(ValueError):
    """A teams file that cannot be used; the message names the line and the column."""


@dataclass(frozen=True)
class Team:
    user_id: str
    cash: float | None
    """None: the loaded scenario's starting cash and positions (the server decides)."""
    line: int


def parse_teams(text: str, source: str = "teams file") -> list[Team]:
    """Teams from CSV text with the header `user_id[,cash]`; blank lines are skipped. Every
    problem is found before any team is created, so a bad file creates nothing."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise TeamsFileError(f"{source} is empty: the first line must be the header user_id[,cash]")
    header = [name.strip() for name in header]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown or "user_id" not in header or len(set(header)) != len(header):
        raise TeamsFileError(
            f"{source} line 1: the header must be user_id or user_id,cash, got {','.join(header)!r}"
        )
    teams: list[Team] = []
    first_line: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            raise TeamsFileError(
                f"{source} line {line}: {len(fields)} fields, the header has {len(header)}"
            )
        row = {name: value.strip() for name, value in zip(header, fields, strict=True)}
        user_id = row["user_id"]
        if not user_id:
            raise TeamsFileError(f"{source} line {line}: user_id is empty")
        if user_id in first_line:
            earlier = first_line[user_id]
            raise TeamsFileError(
                f"{source} line {line}: user_id {user_id!r} is already on line {earlier}"
            )
        first_line[user_id] = line
        teams.append(Team(user_id, _cash(row.get("cash", ""), source, line), line))
    if not teams:
        raise TeamsFileError(f"{source} has a header but no teams")
    return teams


def _cash(value: str, source: str, line: int) -> float | None:
    if not value:
        return None
    try:
        cash = float(value)
    except ValueError:
        raise TeamsFileError(
            f"{source} line {line}: cash must be a number, got {value!r}"
        ) from None
    if not math.isfinite(cash) or cash < 0:
        raise TeamsFileError(f"{source} line {line}: cash must be 0 or more, got {value!r}")
    return cash


def open_keys_file(path: Path) -> TextIO:
    """A new file only its owner can read or write (mode 0600 from its creation, whatever the
    umask), with the header written; FileExistsError rather than overwriting keys."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)
    keys = os.fdopen(descriptor, "w", newline="")
    csv.writer(keys).writerow(KEYS_HEADER)
    keys.flush()
    return keys


def write_key(keys: TextIO, user_id: str, api_key: str) -> None:
    """One line, on disk at once: a key that is lost cannot be shown again (only rotated)."""
    csv.writer(keys).writerow((user_id, api_key))
    keys.flush()
    os.fsync(keys.fileno())
