"""End-of-round reports: what each participant did in each round of the event in progress.

Pure, no I/O: store_svc.queries reads the facts the consumer kept (round marks, the
participants' orders and fills, the engine's score samples, tick sizes) and these functions
decide which round each belongs to and build the participant-facing reports.

- The event is what followed the last scenario loaded (the engine then numbers rounds from 1
  again and starts the scores afresh), or the whole log when none was loaded.
- A round runs from its RoundStarted to its RoundEnded. A round started again with resets (its
  own number, while in progress) counts from its last start, as the engine's scores do.
- Orders, fills, rejections and ETF conversions count in the round whose stretch of the log
  holds them; the event's total counts the whole event, between rounds too.
- P&L, equity, drawdown and sharpe are the engine's last score sample within the stretch: for a
  finished round the one it takes at the round's end, so the figures are the leaderboard's at
  that moment. The engine's equity holds whatever moved cash or positions (fills, conversions,
  resets, the organizer's cash), so nothing here recomputes it from the events.
- Participants rank by the event's total in the metric of the last ranking the log set (P&L
  unless the rules name another), with the leaderboard's key (mockex/ranking.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from exchange.v1 import reports_pb2
from mockex.participant import CASH_UNITS_PER_CURRENCY, timestamp, units_to_cash
from mockex.ranking import rank_key
from store_svc.records import (
    ACTIVITY_ACCEPTED,
    ACTIVITY_CONVERSION,
    ACTIVITY_FILL,
    ACTIVITY_REJECTED,
    ROUND_MARK_ENDED,
    ROUND_MARK_LOADED,
    ROUND_MARK_STARTED,
)

Position = tuple[int, int]
"""(log offset, index of the event in its batch): where a fact is in the log."""

LIMIT_REASONS = frozenset(
    ("POSITION_LIMIT", "OPEN_ORDER_LIMIT", "INSUFFICIENT_POSITION", "INSUFFICIENT_CASH")
)
"""Rejections that are a limit breached (INSUFFICIENT_POSITION: a sale beyond the short limit)."""

WHOLE_EVENT = 0
"""The key of the event's total where figures are kept per round number."""


@dataclass(frozen=True)
class Mark:
    """A round started or ended, or a scenario loaded, where the log has it."""

    position: Position
    kind: str
    round: int
    timestamp_ns: int
    scenario: str = ""


@dataclass(frozen=True)
class Span:
    """A stretch of the log, both ends excluded; None: from the log's start, or still open."""

    round: int
    start: Position | None
    end: Position | None
    started_ns: int = 0
    ended_ns: int = 0


@dataclass(frozen=True)
class Event:
    scenario: str
    whole: Span
    rounds: tuple[Span, ...]

    def round_numbers(self) -> list[int]:
        return [span.round for span in self.rounds]

    def spans(self, only_round: int = WHOLE_EVENT) -> list[Span]:
        """The whole event and every round, or just the round asked for (KeyError: not played)."""
        if only_round == WHOLE_EVENT:
            return [self.whole, *self.rounds]
        for span in self.rounds:
            if span.round == only_round:
                return [span]
        raise KeyError(only_round)


def current_event(marks: Iterable[Mark]) -> Event:
    """The event in progress from every mark of the log, oldest first."""
    scenario, start, started_ns = "", None, 0
    rounds: dict[int, Span] = {}
    for mark in marks:
        if mark.kind == ROUND_MARK_LOADED:
            scenario, start, started_ns = mark.scenario, mark.position, mark.timestamp_ns
            rounds = {}
        elif mark.kind == ROUND_MARK_STARTED:
            rounds.pop(mark.round, None)
            rounds[mark.round] = Span(mark.round, mark.position, None, mark.timestamp_ns)
        elif mark.kind == ROUND_MARK_ENDED:
            span = rounds.get(mark.round)
            if span is not None and span.end is None:
                rounds[mark.round] = Span(
                    span.round, span.start, mark.position, span.started_ns, mark.timestamp_ns
                )
    whole = Span(WHOLE_EVENT, start, None, started_ns)
    return Event(scenario, whole, tuple(rounds.values()))


@dataclass(frozen=True)
class ActivityGroup:
    """One group of a participant's orders or fills in one span: same symbol, kind and reason."""

    user_id: str
    symbol: str
    kind: str
    reason: str
    count: int
    quantity: int
    notional_ticks: int
    fee_units: int


@dataclass
class Tally:
    """A participant's orders, fills and conversions in one span; cash in units."""

    orders: int = 0
    trades: int = 0
    conversions: int = 0
    volume: int = 0
    notional_units: int = 0
    fee_units: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def limit_breaches(self) -> int:
        return sum(count for reason, count in self.rejected.items() if reason in LIMIT_REASONS)


def tick_units(tick_size: str) -> int:
    """Cash units per tick of a tick size as the log has it ("0.01" -> 100)."""
    return int(Decimal(tick_size) * CASH_UNITS_PER_CURRENCY)


def tallies(groups: Iterable[ActivityGroup], ticks: Mapping[str, int]) -> dict[str, Tally]:
    """Each participant's tally from the grouped rows; `ticks` is cash units per tick by symbol
    (a fill's symbol is always listed)."""
    found: dict[str, Tally] = {}
    for group in groups:
        tally = found.setdefault(group.user_id, Tally())
        if group.kind == ACTIVITY_FILL:
            tally.trades += group.count
            tally.volume += group.quantity
            tally.notional_units += group.notional_ticks * ticks[group.symbol]
            tally.fee_units += group.fee_units
        elif group.kind == ACTIVITY_CONVERSION:
            tally.conversions += group.count
            tally.fee_units += group.fee_units
        elif group.kind in (ACTIVITY_ACCEPTED, ACTIVITY_REJECTED):
            tally.orders += group.count
            if group.kind == ACTIVITY_REJECTED:
                tally.rejected[group.reason] = tally.rejected.get(group.reason, 0) + group.count
    return found


@dataclass(frozen=True)
class Sample:
    """One participant's score in one of the engine's ScoresSampled events."""

    timestamp_ns: int
    equity_units: int
    pnl_units: int
    max_drawdown_units: int
    sharpe: float
    round_pnl_units: tuple[int, ...]


def parse_round_pnls(stored: str) -> tuple[int, ...]:
    return tuple(int(pnl) for pnl in stored.split(",") if pnl)


def round_report(span: Span, tally: Tally | None, sample: Sample | None) -> reports_pb2.RoundReport:
    """One span's figures in currency; a participant with no orders or sample has zeros."""
    tally = tally or Tally()
    report = reports_pb2.RoundReport(
        round=span.round,
        orders=tally.orders,
        trades=tally.trades,
        volume=tally.volume,
        notional=units_to_cash(tally.notional_units),
        fees_paid=units_to_cash(tally.fee_units),
        conversions=tally.conversions,
        limit_breaches=tally.limit_breaches,
        rejected_orders=tally.rejected,
    )
    if span.started_ns:
        report.started_at.CopyFrom(timestamp(span.started_ns))
    if span.end is not None:
        report.ended_at.CopyFrom(timestamp(span.ended_ns))
    if sample is not None:
        if span.round == WHOLE_EVENT:
            pnl = sample.pnl_units
        else:
            # The sample is the round's (taken in it or at its end): its P&L is the last.
            pnl = sample.round_pnl_units[-1] if sample.round_pnl_units else 0
        report.pnl = units_to_cash(pnl)
        report.ending_equity = units_to_cash(sample.equity_units)
        report.starting_equity = units_to_cash(sample.equity_units - pnl)
        report.cumulative_pnl = units_to_cash(sample.pnl_units)
        report.max_drawdown = units_to_cash(sample.max_drawdown_units)
        report.sharpe = sample.sharpe
        report.pnl_sampled_at.CopyFrom(timestamp(sample.timestamp_ns))
    return report


def ranking(
    participants: Iterable[str], event_samples: Mapping[str, Sample], metric: int = 0
) -> list[str]:
    """By the event's score in the rules' ranking metric (0: P&L), best first, ties by P&L then
    user id (the leaderboard's order); a participant without a sample yet counts 0."""

    def key(user_id: str) -> tuple[float, float, str]:
        sample = event_samples.get(user_id)
        if sample is None:
            return rank_key(metric, user_id, 0, 0.0)
        return rank_key(metric, user_id, sample.pnl_units, sample.sharpe)

    return sorted(participants, key=key)


def build_reports(
    event: Event,
    participants: Iterable[str],
    tallies_by_round: Mapping[int, Mapping[str, Tally]],
    samples_by_round: Mapping[int, Mapping[str, Sample]],
    only_round: int = WHOLE_EVENT,
    only_user: str = "",
    metric: int = 0,
) -> list[reports_pb2.ParticipantReport]:
    """Every participant's report (or `only_user`'s), rank 1 first by `metric` (the rules'
    ranking). The figures are keyed by round number, WHOLE_EVENT for the total, whose samples
    rank everyone whatever is asked."""
    ranked = ranking(participants, samples_by_round.get(WHOLE_EVENT, {}), metric)
    spans = event.spans(only_round)
    reports = []
    for rank, user_id in enumerate(ranked, start=1):
        if only_user and user_id != only_user:
            continue
        report = reports_pb2.ParticipantReport(user_id=user_id, rank=rank)
        for span in spans:
            figures = round_report(
                span,
                tallies_by_round.get(span.round, {}).get(user_id),
                samples_by_round.get(span.round, {}).get(user_id),
            )
            if span.round == WHOLE_EVENT:
                report.total.CopyFrom(figures)
            else:
                report.rounds.append(figures)
        if (
            report.HasField("total")
            and report.rounds
            and report.rounds[0].HasField("pnl_sampled_at")
        ):
            # Rounds reset between them would make ending equity - event P&L meaningless.
            report.total.starting_equity = report.rounds[0].starting_equity
        reports.append(report)
    return reports
