"""Marks and scores: what positions are worth, and how each participant is doing over time.

The mark of a symbol (one rule for the account view, the leaderboard and the scores): the mid of
a two-sided book at most `mark_max_spread_ticks` wide; otherwise the last trade, clamped into
the book's bid and ask when they are there; before the first trade, the reference price; else
none (a position is then worth its own cost). Marks are in cash units per share.

Scores are sampled on log time, once per minute (the engine calls `sample` with each command's
time) and at each round's end, for ranked accounts only: P&L over the event (finished rounds'
P&L plus the current one's), the largest fall from a previous high, and the mean over the
standard deviation of the per-minute P&L changes. Everything is integer but the final ratio, so
a replay samples exactly the same scores.
"""

from __future__ import annotations

import math

from engine_svc.accounts import Account

MINUTE_NS = 60 * 1_000_000_000


def mark_units(
    bid: int,
    ask: int,
    last: int,
    reference: int,
    tick_cash: int,
    max_spread_ticks: int,
) -> int | None:
    """The mark in cash units per share (prices in ticks; 0 means none)."""
    if bid and ask and max_spread_ticks and ask - bid <= max_spread_ticks:
        return (bid + ask) * tick_cash // 2
    if last:
        if bid and last < bid:
            last = bid
        if ask and last > ask:
            last = ask
        return last * tick_cash
    if reference:
        return reference * tick_cash
    return None


def equity(account: Account, marks: dict[str, int | None]) -> int:
    """Cash plus every position at its mark (its own cost where the symbol has none)."""
    total = account.cash
    for symbol, position in account.positions.items():
        if not position.quantity:
            continue
        mark = marks.get(symbol)
        total += position.cost if mark is None else position.quantity * mark
    return total


class Score:
    """One participant's running score."""

    __slots__ = (
        "banked",
        "round_base",
        "round_pnls",
        "peak",
        "max_drawdown",
        "last_pnl",
        "changes",
        "change_sum",
        "change_squares",
    )

    def __init__(self) -> None:
        self.banked = 0
        """P&L of the rounds already finished."""
        self.round_base = 0
        """The account's own P&L (equity - starting value) when the current round started."""
        self.round_pnls: list[int] = []
        """P&L of each finished round."""
        self.peak = 0
        self.max_drawdown = 0
        self.last_pnl = 0
        self.changes = 0
        self.change_sum = 0
        self.change_squares = 0

    def restart(self) -> None:
        """The event starts with its first round: what came before is no part of its history."""
        self.peak = self.max_drawdown = self.last_pnl = 0
        self.changes = self.change_sum = self.change_squares = 0

    def total(self, account_pnl: int, round_open: bool) -> int:
        """P&L over the event: every finished round's, plus the open round's so far. Before the
        first round (an exchange without rounds) the account's own P&L."""
        if round_open or not self.round_pnls:
            return self.banked + account_pnl - self.round_base
        return self.banked

    def record(self, pnl: int, minutes: int) -> None:
        """The event P&L at a sample `minutes` after the previous one (the minutes between had
        no command, so nothing changed: their changes are 0)."""
        change = pnl - self.last_pnl
        self.changes += minutes
        self.change_sum += change
        self.change_squares += change * change
        self.last_pnl = pnl
        self.peak = max(self.peak, pnl)
        self.max_drawdown = max(self.max_drawdown, self.peak - pnl)

    @property
    def sharpe(self) -> float:
        if self.changes < 2:
            return 0.0
        mean = self.change_sum / self.changes
        variance = self.change_squares / self.changes - mean * mean
        if variance <= 0:
            return 0.0
        return round(mean / math.sqrt(variance), 6)
