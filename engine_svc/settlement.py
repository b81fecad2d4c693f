"""Settlement of one execution: cash, positions and fees of both parties move at once.

Matching decides who trades how much at what price; this module moves the money. Nothing is
created or lost: the buyer's cash goes to the seller, the seller's shares to the buyer, and each
side's fee (maker for the resting order, taker for the incoming one) to the exchange's fee
account.

A conversion (convert) moves shares between an ETF and its basket's components within one
account: the shares keep their cost basis, and its fee goes to the fee account too.
"""

from __future__ import annotations

from engine_svc.accounts import Account
from engine_svc.events import ConversionLeg
from engine_svc.orders import Direction, Order, OrderType, Side
from engine_svc.rules import ExchangeSettings, fee

BUY = Side.BUY
LIMIT = OrderType.LIMIT


def settle(
    accounts: dict[str, Account],
    settings: ExchangeSettings,
    symbol: str,
    tick_cash: int,
    incoming: Order,
    resting: Order,
    price: int,
    quantity: int,
) -> tuple[int, int]:
    """Move cash, positions and fees of both parties (user-less orders have no account and pay
    no fee); returns the (incoming, resting) fees in cash units."""
    price_units = price * tick_cash
    notional = price_units * quantity
    fees = (
        fee(notional, settings.taker_fee_centi_bps) if incoming.user_id else 0,
        fee(notional, resting.maker_fee) if resting.user_id else 0,
    )
    for party, party_fee in zip((incoming, resting), fees, strict=True):
        account = accounts.get(party.user_id) if party.user_id else None
        if account is None:
            continue
        position = account.position(symbol)
        account.cash -= party_fee
        account.fees_paid += party_fee
        if party.side == BUY:
            account.cash -= notional
            released = _buy_release(party, quantity, notional + party_fee, tick_cash)
            party.reserved_cash -= released
            account.reserved_cash -= released
            position.buying -= quantity
            position.apply_fill(quantity, price_units)
        else:
            account.cash += notional
            position.reserved -= quantity
            position.apply_fill(-quantity, price_units)
    return fees


def _buy_release(order: Order, quantity: int, cost: int, tick_cash: int) -> int:
    """What a BUY's fill gives back of the cash it holds. A limit BUY keeps exactly what its
    remainder could still cost at its limit and the fee rate it is held at, and since fees
    round down per fill, what it gives back is never less than the fill cost. A market BUY
    (which never rests) gives back the fill's cost; the last fill gives back the rest."""
    left = order.remaining - quantity
    if not left:
        return order.reserved_cash
    if order.type != LIMIT:
        return min(order.reserved_cash, cost)
    notional_left = order.price * left * tick_cash
    return order.reserved_cash - notional_left - fee(notional_left, order.hold_fee)


def convert(
    account: Account,
    direction: Direction,
    etf: str,
    units: int,
    components: tuple[tuple[str, int], ...],
    weights: tuple[int, ...],
    fee_units: int,
) -> tuple[tuple[ConversionLeg, ...], int]:
    """Move `units` of the ETF against `components` (symbol, shares) and pay the fee; returns
    the legs (the ETF first) and the P&L realized by covering a short.

    Creating, the components leave at their average cost and the ETF units take the sum; the
    ETF's cost is what its components cost. Redeeming, the units leave at their average cost,
    shared among the components in proportion to `weights` (their value at the marks).
    """
    account.cash -= fee_units
    account.fees_paid += fee_units
    etf_position = account.position(etf)
    parts = [(symbol, shares * units) for symbol, shares in components]
    legs: list[ConversionLeg] = []
    if direction == Direction.CREATE:
        costs = [account.position(symbol).give(quantity) for symbol, quantity in parts]
        total = sum(costs)
        realized = etf_position.receive(units, total)
        legs.append(ConversionLeg(etf, units, total, etf_position.quantity))
        for (symbol, quantity), cost in zip(parts, costs, strict=True):
            legs.append(ConversionLeg(symbol, -quantity, -cost, account.positions[symbol].quantity))
    else:
        total = etf_position.give(units)
        legs.append(ConversionLeg(etf, -units, -total, etf_position.quantity))
        realized = 0
        for (symbol, quantity), cost in zip(parts, split(total, weights), strict=True):
            position = account.position(symbol)
            realized += position.receive(quantity, cost)
            legs.append(ConversionLeg(symbol, quantity, cost, position.quantity))
    return tuple(legs), realized


def split(total: int, weights: tuple[int, ...]) -> list[int]:
    """`total` in parts proportional to `weights`, each rounded down but the last, which takes
    what rounding left: the parts add up to `total` exactly."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights[:-1]]
    parts.append(total - sum(parts))
    return parts
