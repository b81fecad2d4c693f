"""The read-side caches the engine keeps current in Redis: orders, books, quotes, accounts.

Fed with each batch's EngineEvents; `write` puts what changed since the last write into a Redis
pipeline. Redis is a cache here: everything in it can be rebuilt from the Kafka log.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio.client import Pipeline

from engine_svc.engine import MatchingEngine, SymbolState
from exchange.internal.v1 import engine_pb2
from exchange.v1 import accounts_pb2, types_pb2
from mockex import convert, names


class EngineViews:
    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.open_order_fills: dict[str, list[types_pb2.Fill]] = {}
        """Fills so far of each open order, so its cached object lists all of them."""
        self._orders: dict[str, engine_pb2.OrderState] = {}
        self._symbols: set[str] = set()
        self._symbol_infos: set[str] = set()
        self._users: set[str] = set()
        self._user_records: list[engine_pb2.UserRecord] = []

    def record(self, batch: engine_pb2.EngineBatch) -> None:
        """Note what one batch changed."""
        command = batch.command
        if command.WhichOneof("command") == "create_account":
            self._users.add(command.create_account.user_id)
            if command.create_account.api_key_sha256:
                self._user_records.append(
                    engine_pb2.UserRecord(
                        user_id=command.create_account.user_id,
                        admin=command.create_account.admin,
                        api_key_sha256=command.create_account.api_key_sha256,
                    )
                )
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in convert.ORDER_EVENT_KINDS:
                state = getattr(event, kind).order
                self._orders[state.order_id] = state
                if state.user_id:
                    self._users.add(state.user_id)
                if kind == "order_filled":
                    tick_size = self.engine.symbols[event.symbol].tick_size_value
                    self.open_order_fills.setdefault(state.order_id, []).append(
                        convert.public_fill(event.order_filled, event.timestamp_ns, tick_size)
                    )
            elif kind in ("symbol_added", "market_state_changed"):
                self._symbol_infos.add(event.symbol)
            if event.symbol and event.sequence:
                self._symbols.add(event.symbol)
        if command.WhichOneof("command") in ("open_market", "close_market"):
            self._symbol_infos.update(self.engine.symbols)

    def write(self, pipeline: Pipeline, now_ns: int) -> None:
        """Queue the changed keys on `pipeline` and forget them."""
        engine = self.engine
        now = convert.timestamp(now_ns)
        for order_id, state in self._orders.items():
            symbol = engine.symbols.get(state.symbol)
            tick_size = symbol.tick_size_value if symbol else 0.01
            if state.status in convert.FINISHED:
                fills = self.open_order_fills.pop(order_id, ())
            else:
                fills = self.open_order_fills.get(order_id, ())
            order = convert.public_order(state, tick_size, fills)
            pipeline.set(
                names.order_key(order_id), order.SerializeToString(), ex=names.ORDER_TTL_SECONDS
            )
        for symbol in self._symbols:
            state = engine.symbols.get(symbol)
            if state is None:
                continue
            book = book_view(state)
            book.timestamp.CopyFrom(now)
            quote = quote_view(state)
            quote.timestamp.CopyFrom(now)
            pipeline.set(names.book_key(symbol), book.SerializeToString())
            pipeline.set(names.quote_key(symbol), quote.SerializeToString())
        if self._symbol_infos:
            pipeline.hset(
                names.SYMBOLS_KEY,
                mapping={
                    symbol: symbol_view(engine, engine.symbols[symbol]).SerializeToString()
                    for symbol in self._symbol_infos
                    if symbol in engine.symbols
                },
            )
        if self._users:
            mapping = {
                user_id: account_view(engine, user_id).SerializeToString()
                for user_id in self._users
                if user_id in engine.accounts
            }
            if mapping:
                pipeline.hset(names.ACCOUNTS_KEY, mapping=mapping)
        if self._user_records:
            pipeline.hset(
                names.USERS_KEY,
                mapping={
                    record.api_key_sha256: record.SerializeToString()
                    for record in self._user_records
                },
            )
        self._orders.clear()
        self._symbols.clear()
        self._symbol_infos.clear()
        self._users.clear()
        self._user_records.clear()

    def mark_everything_changed(self, user_records: Iterable[engine_pb2.UserRecord]) -> None:
        """After a restore: rewrite every symbol, account and user on the next write."""
        self._symbols.update(self.engine.symbols)
        self._symbol_infos.update(self.engine.symbols)
        self._users.update(self.engine.accounts)
        self._user_records.extend(user_records)


def book_view(state: SymbolState, depth: int = 0) -> types_pb2.OrderBook:
    tick_size = state.tick_size_value
    book = types_pb2.OrderBook(symbol=state.symbol, sequence=state.sequence)
    for price, quantity, orders in state.book.bids.depth(depth):
        book.bids.add(
            price=convert.ticks_to_price(price, tick_size), quantity=quantity, orders=orders
        )
    for price, quantity, orders in state.book.asks.depth(depth):
        book.asks.add(
            price=convert.ticks_to_price(price, tick_size), quantity=quantity, orders=orders
        )
    return book


def quote_view(state: SymbolState) -> types_pb2.Quote:
    tick_size = state.tick_size_value
    bid, bid_size, ask, ask_size, _ = state.last_quote
    return types_pb2.Quote(
        symbol=state.symbol,
        ltp=convert.ticks_to_price(state.last, tick_size),
        last_quantity=state.last_quantity,
        bid=convert.ticks_to_price(bid, tick_size),
        bid_size=bid_size,
        ask=convert.ticks_to_price(ask, tick_size),
        ask_size=ask_size,
        volume=state.volume,
        open=convert.ticks_to_price(state.open, tick_size),
        high=convert.ticks_to_price(state.high, tick_size),
        low=convert.ticks_to_price(state.low, tick_size),
        sequence=state.sequence,
    )


def symbol_view(engine: MatchingEngine, state: SymbolState) -> types_pb2.SymbolInfo:
    return types_pb2.SymbolInfo(
        symbol=state.symbol,
        tick_size=state.tick_size_value,
        lot_size=state.lot_size,
        status=engine.symbol_status(state),
    )


def account_view(engine: MatchingEngine, user_id: str) -> accounts_pb2.GetAccountResponse:
    """Cash and positions; marking to market (equity, unrealized P&L) is the reader's job."""
    account = engine.accounts[user_id]
    view = accounts_pb2.GetAccountResponse(
        user_id=user_id,
        cash=convert.units_to_cash(account.cash),
        reserved_cash=convert.units_to_cash(account.reserved_cash),
        available_cash=convert.units_to_cash(account.cash - account.reserved_cash),
        realized_pnl=round(account.realized_pnl, 4),
    )
    for symbol, position in account.positions.items():
        if position.quantity or position.realized_pnl:
            view.positions.add(
                symbol=symbol, quantity=position.quantity, avg_price=round(position.avg_price, 6)
            )
    return view
