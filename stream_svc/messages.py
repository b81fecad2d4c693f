"""Engine batches to the public stream messages: the one place that knows both shapes.

Prices leave the engine as integer ticks and become currency numbers (mockex.participant), with
each symbol's tick size; sequences and timestamps are the events' own, so clients can detect
gaps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex import participant
from mockex.participant import CONVERSION_EVENT_KINDS, ORDER_EVENT_KINDS, timestamp

TickSize = Callable[[str], float]
"""Tick size of a symbol."""


class MarketMessage(NamedTuple):
    """A market data message with what a subscriber needs to drop what its snapshot holds."""

    symbol: str
    sequence: int
    response: streams_pb2.StreamMarketDataResponse


class OrderMessage(NamedTuple):
    user_id: str
    response: streams_pb2.StreamOrderUpdatesResponse


class BatchMessages(NamedTuple):
    """Everything public that one engine command produced, in the order it was emitted."""

    market: list[MarketMessage]
    orders: list[OrderMessage]
    exchange_events: list[streams_pb2.ExchangeEvent]


def batch_messages(batch: engine_pb2.EngineBatch, tick_size: TickSize) -> BatchMessages:
    market: list[MarketMessage] = []
    orders: list[OrderMessage] = []
    for event in batch.events:
        kind = event.WhichOneof("event")
        if kind in ORDER_EVENT_KINDS:
            orders.extend(order_messages(event, tick_size))
            continue
        if kind in CONVERSION_EVENT_KINDS:
            conversion = participant.conversion(event)
            response = streams_pb2.StreamOrderUpdatesResponse(conversion=conversion)
            orders.append(OrderMessage(conversion.user_id, response))
            continue
        response = market_response(event, tick_size(event.symbol))
        if response is not None:
            market.append(MarketMessage(event.symbol, event.sequence, response))
    return BatchMessages(market, orders, exchange_events(batch))


def market_response(
    event: engine_pb2.EngineEvent, tick_size: float
) -> streams_pb2.StreamMarketDataResponse | None:
    """The public form of a book, trade or quote event; None for every other kind."""
    kind = event.WhichOneof("event")
    symbol, sequence = event.symbol, event.sequence
    if kind == "book_level_changed":
        level = event.book_level_changed
        update = streams_pb2.BookUpdate(
            symbol=symbol, sequence=sequence, timestamp=timestamp(event.timestamp_ns)
        )
        side = update.bids if level.side == types_pb2.BUY else update.asks
        side.extend(
            participant.price_levels(
                [(level.price_ticks, level.quantity, level.order_count)], tick_size
            )
        )
        return streams_pb2.StreamMarketDataResponse(book=update)
    if kind == "trade_executed":
        trade = event.trade_executed
        return streams_pb2.StreamMarketDataResponse(
            trade=participant.trade(
                symbol,
                trade.trade_id,
                trade.price_ticks,
                trade.quantity,
                trade.aggressor_side,
                event.timestamp_ns,
                sequence,
                tick_size,
            )
        )
    if kind == "quote_changed":
        return streams_pb2.StreamMarketDataResponse(
            quote=participant.quote(
                symbol, event.quote_changed, sequence, event.timestamp_ns, tick_size
            )
        )
    return None


def order_messages(event: engine_pb2.EngineEvent, tick_size: TickSize) -> list[OrderMessage]:
    """An order event for its owner: the fill first (for OrderFilled), then the order's new state.

    User-less orders (benchmark flows) have nobody to tell.
    """
    kind = event.WhichOneof("event")
    state: engine_pb2.OrderState = getattr(event, kind).order
    if not state.user_id:
        return []
    symbol_tick_size = tick_size(state.symbol)
    messages: list[OrderMessage] = []
    if kind == "order_filled":
        filled = event.order_filled
        fill = streams_pb2.FillUpdate(
            order_id=state.order_id,
            trade_id=filled.trade_id,
            symbol=state.symbol,
            side=state.side,
            price=participant.ticks_to_price(filled.price_ticks, symbol_tick_size),
            quantity=filled.quantity,
            timestamp=timestamp(event.timestamp_ns),
        )
        messages.append(
            OrderMessage(state.user_id, streams_pb2.StreamOrderUpdatesResponse(fill=fill))
        )
    order = streams_pb2.StreamOrderUpdatesResponse(order=participant.order(state, symbol_tick_size))
    messages.append(OrderMessage(state.user_id, order))
    return messages


def exchange_events(batch: engine_pb2.EngineBatch) -> list[streams_pb2.ExchangeEvent]:
    """The batch's exchange-wide events, each with its exchange sequence (gap-free)."""
    announced = []
    for event in batch.events:
        if not event.exchange_sequence:
            continue
        kind, symbol, text = _announcement(event)
        announced.append(
            streams_pb2.ExchangeEvent(
                kind=kind,
                symbol=symbol,
                message=text,
                timestamp=timestamp(event.timestamp_ns),
                sequence=event.exchange_sequence,
            )
        )
    return announced


def _announcement(event: engine_pb2.EngineEvent) -> tuple[int, str, str]:
    """(kind, symbol, message) of an exchange-wide engine event."""
    kind = event.WhichOneof("event")
    if kind == "symbol_added":
        tick_size = event.symbol_added.tick_size
        return (
            streams_pb2.SYMBOL_ADDED,
            event.symbol,
            f"{event.symbol} is listed (tick size {tick_size})",
        )
    if kind == "trading_day_opened":
        return streams_pb2.MARKET_OPENED, "", "The market is open"
    if kind == "trading_day_closed":
        text = "The market closed for the day; good-for-day orders expired"
        return streams_pb2.MARKET_CLOSED_FOR_DAY, "", text
    if kind == "trading_halted":
        symbol = event.trading_halted.symbol
        text = f"Trading in {symbol} is halted" if symbol else "Trading is halted in every symbol"
        return streams_pb2.TRADING_HALTED, symbol, text
    if kind == "trading_resumed":
        symbol = event.trading_resumed.symbol
        text = f"Trading in {symbol} resumed" if symbol else "Trading resumed in every symbol"
        return streams_pb2.TRADING_RESUMED, symbol, text
    if kind == "account_created":
        return streams_pb2.ACCOUNT_CREATED, "", f"{event.account_created.user_id} joined"
    if kind == "settings_changed":
        settings = event.settings_changed.settings
        short = (
            f"short selling up to {settings.short_limit}"
            if settings.short_limit
            else "no short selling"
        )
        cap = settings.max_open_orders
        orders = f"at most {cap} open orders per participant" if cap else "no open-order cap"
        return streams_pb2.SETTINGS_CHANGED, "", f"Rules: {short}, {orders}"
    if kind == "news_published":
        # The headline and the symbols: the shock is the simulator's, never announced.
        news = event.news_published
        return streams_pb2.NEWS, ",".join(news.symbols), news.headline
    if kind == "scenario_changed":
        changed = event.scenario_changed
        state = engine_pb2.ScenarioState.Name(changed.state).removeprefix("SCENARIO_STATE_")
        text = f"Scenario {changed.name}: {state.lower()}"
        return streams_pb2.SCENARIO_CHANGED, "", text
    if kind == "round_started":
        started = event.round_started
        seconds = max(0, round((started.ends_at_ns - event.timestamp_ns) / 1e9))
        ends = datetime.fromtimestamp(started.ends_at_ns / 1e9, UTC).strftime("%H:%M:%S UTC")
        of = f" of {started.rounds}" if started.rounds else ""
        text = f"Round {started.round}{of} started; it ends at {ends} (in {seconds} s)"
        return streams_pb2.ROUND_STARTED, "", text
    if kind == "round_ended":
        return streams_pb2.ROUND_ENDED, "", f"Round {event.round_ended.round} ended"
    if kind == "scores_sampled":
        return streams_pb2.LEADERBOARD_CHANGED, "", "The leaderboard was updated"
    raise ValueError(f"engine event {kind} has an exchange sequence but no announcement")


def book_snapshot(book: types_pb2.OrderBook) -> streams_pb2.StreamMarketDataResponse:
    """The whole book as a BookUpdate with snapshot=true, at the book's own sequence."""
    return streams_pb2.StreamMarketDataResponse(
        book=streams_pb2.BookUpdate(
            symbol=book.symbol,
            snapshot=True,
            bids=book.bids,
            asks=book.asks,
            sequence=book.sequence,
            timestamp=book.timestamp,
        )
    )
