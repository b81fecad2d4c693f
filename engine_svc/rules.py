"""The exchange's settings and the version of the rules the engine applies.

Both decide the outcome of orders, so both are in the log: a ConfigureExchange command sets the
settings (rules version included), and replaying a log reproduces its events only under the
rules it was written with.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = 1
"""Raise it with every change to matching, risk or accounting that changes an event: a log
written under an older version is then replayed without the byte-for-byte check, and the engine
logs the version it takes over with."""


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    rules_version: int = 0
    """0 until the log's first ConfigureExchange: logs from before settings were logged."""
    short_limit: int = 0
    """How far below zero a position may go per symbol (0: no shorting)."""
    max_open_orders: int = 0
    """Open orders allowed per user (0: no limit)."""

    def changes_from(self, previous: ExchangeSettings) -> list[str]:
        """`name old -> new` for each setting that differs, for log lines and messages."""
        return [
            f"{name} {getattr(previous, name)} -> {getattr(self, name)}"
            for name in self.__slots__
            if getattr(previous, name) != getattr(self, name)
        ]
