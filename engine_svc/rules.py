"""The exchange's settings and the version of the rules the engine applies.

Both decide the outcome of orders, so both are in the log: a ConfigureExchange command sets the
settings (rules version included), and replaying a log reproduces its events only under the
rules it was written with.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = 3
"""Raise it with every change to matching, risk or accounting that changes an event: a log
written under an older version is then replayed without the byte-for-byte check, and the engine
logs the version it takes over with. 2: fees, position limits, marks and scores, rounds. 3: the
round in progress restarts only on an explicit restart (a repeated StartRound is refused)."""

FEE_UNITS_PER_RATE = 1_000_000
"""Fee rates are in hundredths of a basis point: a fee is notional * rate / 1,000,000."""


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    rules_version: int = 0
    """0 until the log's first ConfigureExchange: logs from before settings were logged."""
    short_limit: int = 0
    """How far below zero a position may go per symbol (0: no shorting)."""
    max_open_orders: int = 0
    """Open orders allowed per user (0: no limit)."""
    position_limit: int = 0
    """Largest position, long or short, per symbol, counting what open orders could add (0: no
    limit)."""
    maker_fee_centi_bps: int = 0
    """Fee of the resting side of an execution, in hundredths of a basis point of its notional
    (negative: a rebate)."""
    taker_fee_centi_bps: int = 0
    """Fee of the incoming side."""
    mark_max_spread_ticks: int = 0
    """Marks use the mid of a two-sided book at most this wide; 0 or wider: the last trade,
    clamped to the book."""
    message_rate_per_second: int = 0
    """Requests per second per API key at the gateway (0: the gateway's own setting)."""
    ranking: int = 0
    """What the leaderboard and the reports rank by, an exchange.v1.RankingMetric number (0:
    P&L); the engine only keeps it, the gateway and the store rank (mockex/ranking.py)."""

    @property
    def worst_fee_centi_bps(self) -> int:
        """The highest fee an order can pay (what a BUY holds cash for)."""
        return max(self.maker_fee_centi_bps, self.taker_fee_centi_bps, 0)

    def changes_from(self, previous: ExchangeSettings) -> list[str]:
        """`name old -> new` for each setting that differs, for log lines and messages."""
        return [
            f"{name} {getattr(previous, name)} -> {getattr(self, name)}"
            for name in self.__slots__
            if getattr(previous, name) != getattr(self, name)
        ]


def fee(notional_units: int, rate_centi_bps: int) -> int:
    """The fee on `notional_units` at `rate`, rounded toward zero (a rebate too)."""
    if rate_centi_bps >= 0:
        return notional_units * rate_centi_bps // FEE_UNITS_PER_RATE
    return -(notional_units * -rate_centi_bps // FEE_UNITS_PER_RATE)
