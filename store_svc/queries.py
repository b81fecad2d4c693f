"""History answered from the database, as the participant-facing messages of types.proto."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.v1 import competition_pb2, types_pb2
from mockex import participant
from mockex.participant import NANOS_PER_SECOND, ticks_to_price, timestamp
from store_svc.db import fills, news, orders, symbols, trades
from store_svc.records import order_state

OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
CANDLE_INTERVALS_NS = {"1s": NANOS_PER_SECOND, "1m": 60 * NANOS_PER_SECOND}
DEFAULT_TICK_SIZE = "0.01"
"""For an order whose symbol the store never saw listed (rejected as UNKNOWN_SYMBOL)."""


class UnknownSymbol(LookupError):
    """The symbol was never listed (no SymbolAdded in the log)."""


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
