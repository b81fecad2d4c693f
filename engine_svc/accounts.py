"""Participant accounts: integer cash units and positions with an integer cost basis.

Everything is in cash units (0.0001 of the currency), so fills, P&L and the starting value add up
exactly. P&L is equity minus the starting value (cash plus granted positions at their cost
basis); realized plus unrealized P&L less the fees paid equals it.
"""

from __future__ import annotations

CASH_UNITS_PER_CURRENCY = 10_000
"""Cash is held in integer units of 0.0001, so every fill moves cash exactly."""

PARTICIPANT = 0
BOT = 1
"""Account roles (proto AccountRole): bots trade like anyone and are never ranked."""


class Position:
    """Holding in one symbol. `reserved` is the quantity held for open SELL orders, `buying`
    what open BUY orders could add; `cost` what the open quantity cost, signed like it (a
    short's cost is what selling it brought in)."""

    __slots__ = ("quantity", "reserved", "buying", "cost", "realized_pnl")

    def __init__(self, quantity: int = 0, cost: int = 0) -> None:
        self.quantity = quantity
        self.reserved = 0
        self.buying = 0
        self.cost = cost
        self.realized_pnl = 0

    def apply_fill(self, signed_quantity: int, price_units: int) -> None:
        """Move the position by a fill (+ bought, - sold) at `price_units` per share.

        Average cost: a fill that closes part of the position realizes the difference between
        its price and the closed part's share of the cost; a fill that crosses zero opens the
        rest at its own price.
        """
        held = self.quantity
        if held == 0 or (held > 0) == (signed_quantity > 0):
            self.cost += signed_quantity * price_units
        else:
            closed = min(abs(signed_quantity), abs(held))
            closed_cost = self.cost * closed // abs(held)
            direction = 1 if held > 0 else -1
            self.realized_pnl += direction * closed * price_units - closed_cost
            self.cost -= closed_cost
            opened = abs(signed_quantity) - closed
            if opened:
                self.cost = (opened if signed_quantity > 0 else -opened) * price_units
        self.quantity = held + signed_quantity

    def give(self, quantity: int) -> int:
        """Hand `quantity` shares of a long position over (a conversion) at their average
        cost; returns the cost that leaves with them, rounded down as a closing fill's."""
        cost = self.cost * quantity // self.quantity
        self.cost -= cost
        self.quantity -= quantity
        return cost

    def receive(self, quantity: int, cost: int) -> int:
        """Take `quantity` shares handed over with `cost` of cost basis (a conversion). Into a
        short position they cover it as a buy at that cost would: the covered part's P&L is
        realized, and returned. Either way cost less realized P&L rises by exactly `cost`, so
        the account's P&L does not move."""
        held = self.quantity
        self.quantity = held + quantity
        if held >= 0:
            self.cost += cost
            return 0
        closed = min(quantity, -held)
        closed_cost = self.cost * closed // -held
        paid = cost * closed // quantity
        realized = -paid - closed_cost
        self.realized_pnl += realized
        self.cost += cost - paid - closed_cost
        return realized

    def average_price_units(self) -> float:
        """Cost per share of the open quantity; 0 when flat."""
        return self.cost / self.quantity if self.quantity else 0.0


class Account:
    """Cash and positions of one participant. `reserved_cash` backs the open BUY orders;
    `starting_value` is what P&L is measured against."""

    __slots__ = (
        "user_id",
        "cash",
        "reserved_cash",
        "positions",
        "starting_value",
        "admin",
        "api_key_sha256",
        "role",
        "disabled",
        "fees_paid",
        "starting_cash",
        "grants",
    )

    def __init__(
        self,
        user_id: str,
        cash: int,
        starting_value: int | None = None,
        admin: bool = False,
        api_key_sha256: str = "",
        role: int = PARTICIPANT,
    ) -> None:
        self.user_id = user_id
        self.cash = cash
        self.reserved_cash = 0
        self.positions: dict[str, Position] = {}
        self.starting_value = cash if starting_value is None else starting_value
        self.admin = admin
        self.api_key_sha256 = api_key_sha256
        self.role = role
        self.disabled = False
        self.fees_paid = 0
        """Fees paid in cash units (negative: rebates received), for reporting."""
        self.starting_cash = cash
        """Cash and grants (symbol, quantity, cost) the account started with: a round that
        resets accounts puts them back."""
        self.grants: tuple[tuple[str, int, int], ...] = ()

    @property
    def ranked(self) -> bool:
        """On the leaderboard: participants, not admins or bots."""
        return self.role == PARTICIPANT and not self.admin

    def position(self, symbol: str) -> Position:
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position()
        return position

    @property
    def available_cash(self) -> int:
        return self.cash - self.reserved_cash

    @property
    def realized_pnl(self) -> int:
        return sum(position.realized_pnl for position in self.positions.values())
