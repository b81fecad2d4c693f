"""Pre-trade risk: whether an account can back an order, and what an open order holds.

A BUY holds cash for its worst price (its limit, or what a MARKET order can take from the book
now) plus the highest fee it could pay; a SELL holds the quantity from the position, which may
go below zero down to the short limit. An order that could take the position beyond the position
limit (counting every open order of that side) is refused. What an order holds is given back as
it fills (settlement.py) or when it ends (release). An ETF conversion is checked here too
(check_conversion): it needs the shares it gives up, room within the limit for what it gets,
and cash for its fee.
"""

from __future__ import annotations

from decimal import Decimal

from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, Account
from engine_svc.book import BookSide
from engine_svc.orders import Order, OrderType, Reason, Side
from engine_svc.rules import ExchangeSettings, fee

BUY = Side.BUY
LIMIT = OrderType.LIMIT


def reserve(
    order: Order,
    account: Account | None,
    asks: BookSide,
    tick_cash: int,
    settings: ExchangeSettings,
    open_orders_of_user: int,
) -> Reason:
    """Check the account can back the order and hold cash (BUY) or position (SELL) for it."""
    if account is None:
        return Reason.UNKNOWN_USER
    if account.disabled:
        return Reason.USER_DISABLED
    max_open = settings.max_open_orders
    if max_open and open_orders_of_user >= max_open:
        return Reason.OPEN_ORDER_LIMIT
    position = account.position(order.symbol)
    limit = settings.position_limit
    if order.side == BUY:
        if limit and position.quantity + position.buying + order.quantity > limit:
            return Reason.POSITION_LIMIT
        if order.type == LIMIT:
            needed = order.price * order.quantity * tick_cash
        else:
            needed = market_buy_cost(order, asks) * tick_cash
        order.hold_fee = settings.worst_fee_centi_bps
        needed += fee(needed, order.hold_fee)
        if needed > account.cash - account.reserved_cash:
            return Reason.INSUFFICIENT_CASH
        account.reserved_cash += needed
        order.reserved_cash = needed
        position.buying += order.quantity
    else:
        if limit and position.quantity - position.reserved - order.quantity < -limit:
            return Reason.POSITION_LIMIT
        if position.quantity - position.reserved + settings.short_limit < order.quantity:
            return Reason.INSUFFICIENT_POSITION
        position.reserved += order.quantity
    return Reason.NONE


def amend(
    order: Order,
    account: Account,
    price: int,
    remaining: int,
    tick_cash: int,
    settings: ExchangeSettings,
    requeued: bool,
) -> tuple[Reason, str]:
    """Check the account can back a resting order at its new price and remaining quantity,
    and move what it holds to match; Reason.NONE and "", or the reason and a message naming
    what falls short (nothing moved then). A requeued order is held as a new one would be, at
    today's worst fee rate; one that keeps its place keeps the rate it is held at."""
    if account.disabled:
        return Reason.USER_DISABLED, f"userId {account.user_id} is disabled by the organizer"
    position = account.position(order.symbol)
    limit = settings.position_limit
    more = remaining - order.remaining
    if order.side == BUY:
        if limit and more > 0 and position.quantity + position.buying + more > limit:
            message = (
                f"quantity: {more} more to buy would take the position to "
                f"{position.quantity + position.buying + more} (open BUY orders counted), over "
                f"the position limit of {limit}"
            )
            return Reason.POSITION_LIMIT, message
        hold_fee = settings.worst_fee_centi_bps if requeued else order.hold_fee
        needed = price * remaining * tick_cash
        needed += fee(needed, hold_fee)
        extra = needed - order.reserved_cash
        if extra > account.cash - account.reserved_cash:
            message = (
                f"the amended order needs {currency(extra)} more cash than it holds, and the "
                f"available cash is {currency(max(account.available_cash, 0))}"
            )
            return Reason.INSUFFICIENT_CASH, message
        account.reserved_cash += extra
        order.reserved_cash = needed
        order.hold_fee = hold_fee
        position.buying += more
        return Reason.NONE, ""
    if more > 0:
        if limit and position.quantity - position.reserved - more < -limit:
            message = (
                f"quantity: {more} more to sell would take the position to "
                f"{position.quantity - position.reserved - more} (open SELL orders counted), "
                f"beyond the position limit of -{limit}"
            )
            return Reason.POSITION_LIMIT, message
        available = position.quantity - position.reserved + settings.short_limit
        if available < more:
            message = (
                f"quantity: {more} more to sell, {max(available, 0)} available ({position.quantity}"
                f" held, {position.reserved} for open SELL orders, short limit "
                f"{settings.short_limit})"
            )
            return Reason.INSUFFICIENT_POSITION, message
    position.reserved += more
    return Reason.NONE, ""


def market_buy_cost(order: Order, asks: BookSide) -> int:
    """Ticks x quantity a MARKET BUY can take from the book now (own orders skipped)."""
    wanted = order.quantity
    cost = 0
    for level in asks.iter_levels():
        for resting in level.orders.values():
            if resting.user_id == order.user_id:
                continue
            taken = min(wanted, resting.remaining)
            cost += taken * level.price
            wanted -= taken
            if not wanted:
                return cost
    return cost


def check_conversion(
    account: Account | None,
    user_id: str,
    given: tuple[tuple[str, int], ...],
    received: tuple[tuple[str, int], ...],
    fee_units: int,
    settings: ExchangeSettings,
) -> tuple[Reason, str]:
    """Can the account convert: give up `given` (symbol, quantity) from what no open SELL
    holds (the short limit is for selling, not for converting), take in `received` within the
    position limit counting its open BUYs, and pay the fee from cash no open BUY holds? The
    reason and a message naming what falls short, or Reason.NONE."""
    if account is None:
        return Reason.UNKNOWN_USER, f"userId {user_id} has no account"
    if account.disabled:
        return Reason.USER_DISABLED, f"userId {user_id} is disabled by the organizer"
    limit = settings.position_limit
    if limit:
        for symbol, quantity in received:
            position = account.positions.get(symbol)
            held = position.quantity + position.buying if position else 0
            if held + quantity > limit:
                message = (
                    f"{symbol}: receiving {quantity} would take the position to {held + quantity}"
                    f" (open BUY orders counted), over the position limit of {limit}"
                )
                return Reason.POSITION_LIMIT, message
    for symbol, quantity in given:
        position = account.positions.get(symbol)
        held, reserved = (position.quantity, position.reserved) if position else (0, 0)
        if quantity > held - reserved:
            message = (
                f"{symbol}: the conversion needs {quantity}, {max(held - reserved, 0)} available"
                f" ({held} held, {reserved} of them for open SELL orders)"
            )
            return Reason.INSUFFICIENT_POSITION, message
    if fee_units > account.available_cash:
        message = (
            f"the conversion fee of {currency(fee_units)} is more than the available cash of "
            f"{currency(max(account.available_cash, 0))}"
        )
        return Reason.INSUFFICIENT_CASH, message
    return Reason.NONE, ""


def currency(units: int) -> str:
    """Cash units as the participant reads them: 12.5, not 125000."""
    return format((Decimal(units) / CASH_UNITS_PER_CURRENCY).normalize(), "f")


def release(order: Order, account: Account | None) -> None:
    """Give back the cash or position an order no longer needs (it finished or left the book)."""
    if account is None:
        return
    position = account.position(order.symbol)
    if order.side == BUY:
        account.reserved_cash -= order.reserved_cash
        order.reserved_cash = 0
        position.buying -= order.remaining
    else:
        position.reserved -= order.remaining
