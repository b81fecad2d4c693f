"""Participant accounts: integer cash units and positions, with P&L kept for reporting."""

from __future__ import annotations

CASH_UNITS_PER_CURRENCY = 10_000
"""Cash is held in integer units of 0.0001, so every fill moves cash exactly."""


class Position:
    """Holding in one symbol. `reserved` is the quantity held for open SELL orders."""

    __slots__ = ("quantity", "reserved", "avg_price", "realized_pnl")

    def __init__(self, quantity: int = 0, avg_price: float = 0.0) -> None:
        self.quantity = quantity
        self.reserved = 0
        self.avg_price = avg_price
        self.realized_pnl = 0.0

    def apply_fill(self, signed_quantity: int, price: float) -> None:
        """Move the position by a fill (+ bought, - sold) at `price`; average-cost P&L."""
        held = self.quantity
        new_quantity = held + signed_quantity
        if held == 0 or (held > 0) == (signed_quantity > 0):
            self.avg_price = (self.avg_price * abs(held) + price * abs(signed_quantity)) / abs(
                new_quantity
            )
        else:
            closed = min(abs(signed_quantity), abs(held))
            direction = 1 if held > 0 else -1
            self.realized_pnl += (price - self.avg_price) * closed * direction
            if new_quantity == 0:
                self.avg_price = 0.0
            elif (new_quantity > 0) != (held > 0):
                self.avg_price = price
        self.quantity = new_quantity


class Account:
    """Cash and positions of one participant. `reserved_cash` backs the open BUY orders."""

    __slots__ = ("user_id", "cash", "reserved_cash", "positions")

    def __init__(self, user_id: str, cash: int, positions: dict[str, int] | None = None) -> None:
        self.user_id = user_id
        self.cash = cash
        self.reserved_cash = 0
        self.positions: dict[str, Position] = {
            symbol: Position(quantity) for symbol, quantity in (positions or {}).items()
        }

    def position(self, symbol: str) -> Position:
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position()
        return position

    @property
    def realized_pnl(self) -> float:
        return sum(position.realized_pnl for position in self.positions.values())
