"""Engine batches to the public stream messages: the one place that knows both shapes.

Prices leave the engine as integer ticks and become currency numbers here, with each symbol's
tick size; sequences and timestamps are the events' own, so clients can detect gaps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex.convert import ORDER_EVENT_KINDS, public_order, ticks_to_price, timestamp

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
    exchange_event: streams_pb2.ExchangeEvent | None


def batch_messages(batch: engine_pb2.EngineBatch, tick_size: TickSize) -> BatchMessages:
    market: list[MarketMessage] = []
    orders: list[OrderMessage] = []
    for event in batch.events:
        kind = event.WhichOneof("event")
        if kind in ORDER_EVENT_KINDS:
            orders.extend(order_messages(event, tick_size))
            continue
        response = market_response(event, tick_size(event.symbol))
        if response is not None:
            market.append(MarketMessage(event.symbol, event.sequence, response))
    return BatchMessages(market, orders, exchange_event(batch))


def market_response(
    event: engine_pb2.EngineEvent, tick_size: float
) -> streams_pb2.StreamMarketDataResponse | None:
    """The public form of a book, trade or quote event; None for every other kind."""
    kind = event.WhichOneof("event")
    symbol, sequence, when = event.symbol, event.sequence, timestamp(event.timestamp_ns)
    if kind == "book_level_changed":
        level = event.book_level_changed
        update = streams_pb2.BookUpdate(symbol=symbol, sequence=sequence, timestamp=when)
        side = update.bids if level.side == types_pb2.BUY else update.asks
        side.add(
            price=ticks_to_price(level.price_ticks, tick_size),
            quantity=level.quantity,
            orders=level.order_count,
        )
        return streams_pb2.StreamMarketDataResponse(book=update)
    if kind == "trade_executed":
        trade = event.trade_executed
        return streams_pb2.StreamMarketDataResponse(
            trade=types_pb2.Trade(
                trade_id=trade.trade_id,
                price=ticks_to_price(trade.price_ticks, tick_size),
                quantity=trade.quantity,
                aggressor_side=trade.aggressor_side,
                timestamp=when,
                sequence=sequence,
                symbol=symbol,
            )
        )
    if kind == "quote_changed":
        quote = event.quote_changed
        return streams_pb2.StreamMarketDataResponse(
            quote=types_pb2.Quote(
                symbol=symbol,
                ltp=ticks_to_price(quote.last_ticks, tick_size),
                last_quantity=quote.last_quantity,
                bid=ticks_to_price(quote.bid_ticks, tick_size),
                bid_size=quote.bid_size,
                ask=ticks_to_price(quote.ask_ticks, tick_size),
                ask_size=quote.ask_size,
                volume=quote.volume,
                open=ticks_to_price(quote.open_ticks, tick_size),
                high=ticks_to_price(quote.high_ticks, tick_size),
                low=ticks_to_price(quote.low_ticks, tick_size),
                timestamp=when,
                sequence=sequence,
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
            price=ticks_to_price(filled.price_ticks, symbol_tick_size),
            quantity=filled.quantity,
            timestamp=timestamp(event.timestamp_ns),
        )
        messages.append(
            OrderMessage(state.user_id, streams_pb2.StreamOrderUpdatesResponse(fill=fill))
        )
    order = streams_pb2.StreamOrderUpdatesResponse(order=public_order(state, symbol_tick_size))
    messages.append(OrderMessage(state.user_id, order))
    return messages


def exchange_event(batch: engine_pb2.EngineBatch) -> streams_pb2.ExchangeEvent | None:
    """The market-wide news in an admin command, if the command changed anything.

    An open of an open market (or a halt of a halted symbol) produces no engine events and so no
    exchange event.
    """
    command = batch.command
    produced: dict[str, engine_pb2.EngineEvent] = {}
    for event in batch.events:
        produced.setdefault(event.WhichOneof("event"), event)
    kind = command.WhichOneof("command")
    if kind == "add_symbol" and "symbol_added" in produced:
        added = produced["symbol_added"]
        return _exchange_event(
            streams_pb2.SYMBOL_ADDED,
            added.symbol,
            f"{added.symbol} is listed (tick size {added.symbol_added.tick_size})",
            added.timestamp_ns,
        )
    changed = produced.get("market_state_changed")
    if changed is None:
        return None
    if kind == "open_market":
        return _exchange_event(
            streams_pb2.MARKET_OPENED, "", "The market is open", changed.timestamp_ns
        )
    if kind == "close_market":
        return _exchange_event(
            streams_pb2.MARKET_CLOSED_FOR_DAY,
            "",
            "The market closed for the day; good-for-day orders expired",
            changed.timestamp_ns,
        )
    if kind == "halt_trading":
        symbol = command.halt_trading.symbol
        text = f"Trading in {symbol} is halted" if symbol else "Trading is halted in every symbol"
        return _exchange_event(streams_pb2.TRADING_HALTED, symbol, text, changed.timestamp_ns)
    if kind == "resume_trading":
        symbol = command.resume_trading.symbol
        text = f"Trading in {symbol} resumed" if symbol else "Trading resumed in every symbol"
        return _exchange_event(streams_pb2.TRADING_RESUMED, symbol, text, changed.timestamp_ns)
    return None


def _exchange_event(
    kind: streams_pb2.ExchangeEventKind, symbol: str, text: str, timestamp_ns: int
) -> streams_pb2.ExchangeEvent:
    return streams_pb2.ExchangeEvent(
        kind=kind, symbol=symbol, message=text, timestamp=timestamp(timestamp_ns)
    )


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
