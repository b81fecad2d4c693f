"""Settlement of one execution: cash and positions of both parties move at once.

Matching decides who trades how much at what price; this module moves the money. Nothing is
created or lost: the buyer's cash goes to the seller, the seller's shares to the buyer.
"""

from __future__ import annotations

from engine_svc.accounts import Account
from engine_svc.orders import Order, OrderType, Side

BUY = Side.BUY
LIMIT = OrderType.LIMIT


def settle(
    accounts: dict[str, Account],
    symbol: str,
    tick_cash: int,
    incoming: Order,
    resting: Order,
    price: int,
    quantity: int,
) -> None:
    """Move cash and positions of both parties (user-less orders have no account)."""
    price_units = price * tick_cash
    notional = price_units * quantity
    for party in (incoming, resting):
        account = accounts.get(party.user_id) if party.user_id else None
        if account is None:
            continue
        position = account.position(symbol)
        if party.side == BUY:
            account.cash -= notional
            # A LIMIT BUY held cash at its limit; a price improvement is given back with it.
            released = party.price * quantity * tick_cash if party.type == LIMIT else notional
            party.reserved_cash -= released
            account.reserved_cash -= released
            position.apply_fill(quantity, price_units)
        else:
            account.cash += notional
            position.reserved -= quantity
            position.apply_fill(-quantity, price_units)
