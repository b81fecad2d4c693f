"""History answered from the database, as the participant-facing messages of types.proto."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy import ColumnElement, Table, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.v1 import competition_pb2, reports_pb2, types_pb2
from mockex import participant, ranking
from mockex.participant import NANOS_PER_SECOND, ticks_to_price, timestamp
from store_svc import reports
from store_svc.db import (
    accounts,
    fills,
    news,
    orders,
    rankings,
    report_activity,
    round_marks,
    score_samples,
    symbols,
    trades,
)
from store_svc.records import PARTICIPANT_ROLE, order_state

OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
CANDLE_INTERVALS_NS = {"1s": NANOS_PER_SECOND, "1m": 60 * NANOS_PER_SECOND}
DEFAULT_TICK_SIZE = "0.01"
"""For an order whose symbol the store never saw listed (rejected as UNKNOWN_SYMBOL)."""


class UnknownSymbol(LookupError):
    """The symbol was never listed (no SymbolAdded in the log)."""


class UnknownRound(LookupError):
    """The round asked for was not played in the event in progress."""

    def __init__(self, round_number: int, played: list[int]) -> None:
        rounds = ", ".join(str(number) for number in played) or "none yet"
        super().__init__(
            f"round {round_number} has not been played in this event (rounds: {rounds}); "
            "round 0 gives every round and the total"
        )


def _tick(tick_size: str) -> float:
    return float(Decimal(tick_size))


async def _tick_size(conn: AsyncConnection, symbol: str) -> float:
    """The symbol's tick size; UnknownSymbol when it was never listed."""
    tick_size = await conn.scalar(select(symbols.c.tick_size).where(symbols.c.symbol == symbol))
    if tick_size is None:
        raise UnknownSymbol(symbol)
    return _tick(tick_size)


async def _public_orders(conn: AsyncConnection, order_rows: Sequence) -> list[types_pb2.Order]:
    """Order rows with their fills (in time order) and their symbols' tick sizes."""
    if not order_rows:
        return []
    order_ids = [row.order_id for row in order_rows]
    fill_rows = await conn.execute(
        select(fills)
        .where(fills.c.order_id.in_(order_ids))
        .order_by(fills.c.timestamp_ns, fills.c.sequence)
    )
    fills_by_order: dict[str, list] = {order_id: [] for order_id in order_ids}
    for fill in fill_rows:
        fills_by_order[fill.order_id].append(fill)
    listed = await conn.execute(
        select(symbols.c.symbol, symbols.c.tick_size).where(
            symbols.c.symbol.in_({row.symbol for row in order_rows})
        )
    )
    tick_sizes: dict[str, str] = dict(listed.all())
    result = []
    for row in order_rows:
        tick = _tick(tick_sizes.get(row.symbol, DEFAULT_TICK_SIZE))
        order_fills = [
            participant.fill(
                fill.trade_id,
                fill.price_ticks,
                fill.quantity,
                fill.timestamp_ns,
                tick,
                fill.fee_units,
            )
            for fill in fills_by_order[row.order_id]
        ]
        result.append(participant.order(order_state(row), tick, order_fills))
    return result


async def stored_order(engine: AsyncEngine, order_id: str) -> types_pb2.Order | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()
        if row is None:
            return None
        return (await _public_orders(conn, [row]))[0]


async def user_orders(
    engine: AsyncEngine, user_id: str, status: str, limit: int
) -> list[types_pb2.Order]:
    """The user's orders, newest first; `status` is "open", "closed" or "" for all."""
    query = select(orders).where(orders.c.user_id == user_id)
    if status == "open":
        query = query.where(orders.c.status.in_(OPEN_STATUSES))
    elif status == "closed":
        query = query.where(orders.c.status.not_in(OPEN_STATUSES))
    query = query.order_by(orders.c.created_ns.desc(), orders.c.order_id.desc()).limit(limit)
    async with engine.connect() as conn:
        return await _public_orders(conn, (await conn.execute(query)).all())


async def symbol_trades(engine: AsyncEngine, symbol: str, limit: int) -> list[types_pb2.Trade]:
    """The symbol's trades, newest first."""
    async with engine.connect() as conn:
        tick = await _tick_size(conn, symbol)
        rows = await conn.execute(
            select(trades)
            .where(trades.c.symbol == symbol)
            .order_by(trades.c.timestamp_ns.desc(), trades.c.sequence.desc())
            .limit(limit)
        )
        return [
            participant.trade(
                row.symbol,
                row.trade_id,
                row.price_ticks,
                row.quantity,
                types_pb2.Side.Value(row.aggressor_side),
                row.timestamp_ns,
                row.sequence,
                tick,
            )
            for row in rows
        ]


async def symbol_candles(
    engine: AsyncEngine, symbol: str, interval_ns: int, limit: int
) -> list[types_pb2.Candle]:
    """The newest `limit` candles of the symbol's trades, newest last.

    Trades are streamed newest first and the read stops at the first trade of an older candle,
    so the work is bounded by the trades in the candles asked for, not by the symbol's history.
    """
    async with engine.connect() as conn:
        tick = await _tick_size(conn, symbol)
        rows = await conn.stream(
            select(trades.c.timestamp_ns, trades.c.price_ticks, trades.c.quantity)
            .where(trades.c.symbol == symbol)
            .order_by(trades.c.timestamp_ns.desc(), trades.c.sequence.desc())
            .execution_options(yield_per=1000)
        )
        newest_first: list[tuple[int, int, int]] = []
        buckets, last_bucket = 0, None
        async for timestamp_ns, price_ticks, quantity in rows:
            bucket = timestamp_ns // interval_ns
            if bucket != last_bucket:
                buckets, last_bucket = buckets + 1, bucket
                if buckets > limit:
                    break
            newest_first.append((timestamp_ns, price_ticks, quantity))
        await rows.close()
    return build_candles(reversed(newest_first), interval_ns, tick)


def build_candles(
    trades_in_order: Iterable[tuple[int, int, int]], interval_ns: int, tick: float
) -> list[types_pb2.Candle]:
    """OHLCV per interval from (timestamp_ns, price_ticks, quantity) oldest first.

    Intervals without trades have no candle.
    """
    candles: list[types_pb2.Candle] = []
    current_bucket = None
    for timestamp_ns, price_ticks, quantity in trades_in_order:
        price = ticks_to_price(price_ticks, tick)
        bucket = timestamp_ns // interval_ns
        if bucket != current_bucket:
            current_bucket = bucket
            candles.append(
                types_pb2.Candle(
                    start=timestamp(bucket * interval_ns),
                    open=price,
                    high=price,
                    low=price,
                    close=price,
                    volume=0,
                )
            )
        candle = candles[-1]
        candle.high = max(candle.high, price)
        candle.low = min(candle.low, price)
        candle.close = price
        candle.volume += quantity
    return candles


async def latest_news(engine: AsyncEngine, limit: int) -> list[competition_pb2.NewsItem]:
    """Newest first (the exchange sequence orders news of one timestamp)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(news)
            .order_by(news.c.timestamp_ns.desc(), news.c.exchange_sequence.desc())
            .limit(limit)
        )
        return [
            competition_pb2.NewsItem(
                news_id=row.news_id,
                headline=row.headline,
                symbols=[symbol for symbol in row.symbols.split(",") if symbol],
                timestamp=timestamp(row.timestamp_ns),
            )
            for row in rows
        ]


async def event_reports(
    engine: AsyncEngine, user_id: str, round_number: int
) -> tuple[reports.Event, list[reports_pb2.ParticipantReport], int]:
    """The event in progress, its reports and the metric that ranks them: every
    participant's, or `user_id`'s (none when that user is no participant); every round and the
    total, or `round_number`'s only (UnknownRound when it was not played)."""
    async with engine.connect() as conn:
        marks = await conn.execute(
            select(round_marks).order_by(round_marks.c.log_offset, round_marks.c.event_index)
        )
        event = reports.current_event(
            reports.Mark(
                (row.log_offset, row.event_index),
                row.kind,
                row.round,
                row.timestamp_ns,
                row.scenario,
            )
            for row in marks
        )
        try:
            spans = event.spans(round_number)
        except KeyError:
            raise UnknownRound(round_number, event.round_numbers()) from None
        participants = set(
            (
                await conn.execute(
                    select(accounts.c.user_id).where(
                        accounts.c.role == PARTICIPANT_ROLE, accounts.c.admin.is_(False)
                    )
                )
            ).scalars()
        )
        metric = await _ranking_in_force(conn)
        if user_id and user_id not in participants:
            return event, [], metric
        listed = await conn.execute(select(symbols.c.symbol, symbols.c.tick_size))
        ticks = {symbol: reports.tick_units(tick_size) for symbol, tick_size in listed}
        tallies_by_round = {}
        samples_by_round = {reports.WHOLE_EVENT: await _last_samples(conn, event.whole)}
        for span in spans:
            groups = await _activity_groups(conn, span, user_id)
            tallies_by_round[span.round] = reports.tallies(groups, ticks)
            if span.round != reports.WHOLE_EVENT:
                samples_by_round[span.round] = await _last_samples(conn, span)
    found = reports.build_reports(
        event, participants, tallies_by_round, samples_by_round, round_number, user_id, metric
    )
    return event, found, metric


async def _ranking_in_force(conn: AsyncConnection) -> int:
    """The metric of the log's last SettingsChanged (P&L before any)."""
    name = (
        await conn.execute(
            select(rankings.c.ranking)
            .order_by(rankings.c.log_offset.desc(), rankings.c.event_index.desc())
            .limit(1)
        )
    ).scalar()
    return ranking.metric_in_force(types_pb2.RankingMetric.Value(name) if name else 0)


def _within(table: Table, span: reports.Span) -> list[ColumnElement[bool]]:
    """The rows of `table` (keyed by log_offset, event_index) inside the span."""
    position = tuple_(table.c.log_offset, table.c.event_index)
    clauses = []
    if span.start is not None:
        clauses += [table.c.log_offset >= span.start[0], position > tuple_(*span.start)]
    if span.end is not None:
        clauses += [table.c.log_offset <= span.end[0], position < tuple_(*span.end)]
    return clauses


async def _activity_groups(
    conn: AsyncConnection, span: reports.Span, user_id: str
) -> list[reports.ActivityGroup]:
    activity = report_activity.c
    query = select(
        activity.user_id,
        activity.symbol,
        activity.kind,
        activity.reason,
        func.count(),
        func.sum(activity.quantity),
        func.sum(activity.notional_ticks),
        func.sum(activity.fee_units),
    ).where(*_within(report_activity, span))
    if user_id:
        query = query.where(activity.user_id == user_id)
    query = query.group_by(activity.user_id, activity.symbol, activity.kind, activity.reason)
    return [
        # PostgreSQL sums BIGINT as NUMERIC: back to int.
        reports.ActivityGroup(user, symbol, kind, reason, *(int(n) for n in numbers))
        for user, symbol, kind, reason, *numbers in await conn.execute(query)
    ]


async def _last_samples(conn: AsyncConnection, span: reports.Span) -> dict[str, reports.Sample]:
    """Each participant's score in the engine's last ScoresSampled event inside the span."""
    last = (
        await conn.execute(
            select(score_samples.c.log_offset, score_samples.c.event_index)
            .where(*_within(score_samples, span))
            .order_by(score_samples.c.log_offset.desc(), score_samples.c.event_index.desc())
            .limit(1)
        )
    ).first()
    if last is None:
        return {}
    rows = await conn.execute(
        select(score_samples).where(
            score_samples.c.log_offset == last.log_offset,
            score_samples.c.event_index == last.event_index,
        )
    )
    return {
        row.user_id: reports.Sample(
            row.timestamp_ns,
            row.equity_units,
            row.pnl_units,
            row.max_drawdown_units,
            row.sharpe,
            reports.parse_round_pnls(row.round_pnl_units),
        )
        for row in rows
    }
