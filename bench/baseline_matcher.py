"""The plain matcher the engine is measured against: same matching, nothing else.

Written the straightforward way: per side a dict price -> list of [order_id, remaining] (oldest
first) plus a sorted list of prices kept with `bisect.insort`; a dict order_id -> (side, price)
finds an open order for a cancel. No order objects, statuses, events, sequences or accounts: it
counts executions (one per resting order hit) and traded quantity, and knows the best prices.
Matching is the engine's for user-less orders: price-time priority, trade at the resting price,
GFD rests, an IOC or MARKET remainder expires, FOK fills whole within its limit or not at all.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from engine_svc.orders import OrderType, Side, TimeInForce

BUY = Side.BUY
MARKET = OrderType.MARKET
GFD = TimeInForce.GFD
FOK = TimeInForce.FOK


class BaselineMatcher:
    def __init__(self) -> None:
        self.bids: dict[int, list[list]] = {}
        self.asks: dict[int, list[list]] = {}
        self.bid_prices: list[int] = []  # ascending: the best bid is the last
        self.ask_prices: list[int] = []  # ascending: the best ask is the first
        self.open_orders: dict[str, tuple[Side, int]] = {}
        self.trades = 0
        self.traded_quantity = 0

    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def is_open(self, order_id: str) -> bool:
        return order_id in self.open_orders

    def place(
        self,
        order_id: str,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: int,
        quantity: int,
    ) -> None:
        is_buy = side == BUY
        is_market = order_type == MARKET
        if is_buy:
            levels, prices = self.asks, self.ask_prices
        else:
            levels, prices = self.bids, self.bid_prices

        if tif == FOK and not self._can_fill(levels, prices, is_buy, is_market, price, quantity):
            return

        remaining = quantity
        while remaining and prices:
            best = prices[0] if is_buy else prices[-1]
            if not is_market and (best > price if is_buy else best < price):
                break
            level = levels[best]
            while remaining and level:
                entry = level[0]
                traded = min(remaining, entry[1])
                entry[1] -= traded
                remaining -= traded
                self.trades += 1
                self.traded_quantity += traded
                if entry[1] == 0:
                    level.pop(0)
                    del self.open_orders[entry[0]]
            if not level:
                del levels[best]
                if is_buy:
                    prices.pop(0)
                else:
                    prices.pop()

        if remaining and not is_market and tif == GFD:
            own_levels, own_prices = (
                (self.bids, self.bid_prices) if is_buy else (self.asks, self.ask_prices)
            )
            level = own_levels.get(price)
            if level is None:
                level = own_levels[price] = []
                insort(own_prices, price)
            level.append([order_id, remaining])
            self.open_orders[order_id] = (side, price)

    def _can_fill(self, levels, prices, is_buy, is_market, price, quantity) -> bool:
        """Does the opposite side hold `quantity` within the limit (any price for MARKET)?"""
        available = 0
        for best in prices if is_buy else reversed(prices):
            if not is_market and (best > price if is_buy else best < price):
                return False
            available += sum(entry[1] for entry in levels[best])
            if available >= quantity:
                return True
        return False

    def cancel(self, order_id: str) -> bool:
        """Remove an open order; False when it is not open (unknown or already finished)."""
        found = self.open_orders.pop(order_id, None)
        if found is None:
            return False
        side, price = found
        if side == BUY:
            levels, prices = self.bids, self.bid_prices
        else:
            levels, prices = self.asks, self.ask_prices
        level = levels[price]
        for index, entry in enumerate(level):
            if entry[0] == order_id:
                del level[index]
                break
        if not level:
            del levels[price]
            del prices[bisect_left(prices, price)]
        return True
