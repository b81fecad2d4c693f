"""Checks every field of a participant's request before anything reaches the engine.

Pure functions: a request and what the gateway knows in, a command or a RequestError naming the
field out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import grpc

from exchange.internal.v1 import engine_pb2
from exchange.v1 import admin_pb2, orders_pb2, types_pb2
from mockex import participant, ranking
from mockex.auth import ADMIN_USER_ID

MAX_ORDER_QUANTITY = 1_000_000
MAX_PRICE = 10_000_000.0
"""Keeps price x quantity in ticks well inside int64 even at the finest tick (0.0001)."""
MAX_CASH = 1_000_000_000_000.0
MAX_POSITION = 1_000_000_000
MAX_TICK_SIZE = 10_000.0
MAX_LOT_SIZE = 1_000_000
MAX_CLIENT_ORDER_ID_LENGTH = 64
SYMBOL_PATTERN = re.compile(r"[A-Z][A-Z0-9.]{0,11}")
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Identifier patterns are matched whole (`fullmatch`): `$` would let a trailing newline in."""
RESERVED_USER_IDS = frozenset({ADMIN_USER_ID})
"""Taken by the organizer's key (MOCKEX_ADMIN_KEY); compared without case."""
LIMIT_TIMES_IN_FORCE = (types_pb2.GFD, types_pb2.IOC, types_pb2.FOK, types_pb2.GTC)
MARKET_TIMES_IN_FORCE = (types_pb2.IOC, types_pb2.FOK)
ORDER_LIST_FILTERS = ("", "open", "closed")


class RequestError(Exception):
    """A request the gateway refuses; becomes a gRPC status (and an HTTP code at the edge)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    tick_size: Decimal
    lot_size: int
    reference_price: float
    """0 when the symbol has none."""
    convertible: bool = False
    """An ETF listed with a basket (POST /orders/convert)."""

    @classmethod
    def from_info(cls, info: types_pb2.SymbolInfo) -> SymbolSpec:
        return cls(
            info.symbol,
            Decimal(repr(info.tick_size)),
            info.lot_size or 1,
            info.reference_price,
            bool(info.basket),
        )


def check_symbol_name(symbol: str, field: str = "symbol") -> None:
    if not symbol:
        raise invalid(f"{field} is required")
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise invalid(
            f"{field} {symbol!r} is not a symbol: upper-case letters and digits, at most 12"
        )


def place_order_command(
    request: orders_pb2.PlaceOrderRequest,
    caller_id: str,
    spec: SymbolSpec | None,
    order_id: str,
) -> engine_pb2.PlaceOrderCommand:
    """The engine command for a valid request; RequestError naming the first bad field."""
    if request.user_id and request.user_id != caller_id:
        raise RequestError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"userId {request.user_id!r} is not the user of this API key",
        )
    check_symbol_name(request.symbol)
    if spec is None:
        raise invalid(f"symbol {request.symbol!r} is not listed")
    check_choice("side", request.side, (types_pb2.BUY, types_pb2.SELL), types_pb2.Side)
    check_choice("type", request.type, (types_pb2.LIMIT, types_pb2.MARKET), types_pb2.OrderType)
    quantity = request.quantity
    if quantity == 0:
        raise invalid("quantity is required: a positive integer")
    if quantity < 0:
        raise invalid(f"quantity must be a positive integer, got {quantity}")
    if quantity > MAX_ORDER_QUANTITY:
        raise invalid(f"quantity {quantity} is over the maximum of {MAX_ORDER_QUANTITY}")
    if quantity % spec.lot_size:
        raise invalid(f"quantity {quantity} is not a multiple of the lot size {spec.lot_size}")
    time_in_force = request.time_in_force
    price_ticks = 0
    if time_in_force:
        check_choice("timeInForce", time_in_force, LIMIT_TIMES_IN_FORCE, types_pb2.TimeInForce)
    if request.type == types_pb2.LIMIT:
        time_in_force = time_in_force or types_pb2.GFD
        price = request.price
        if not math.isfinite(price) or price <= 0:
            raise invalid(f"price must be a positive number for a LIMIT order, got {price}")
        if price > MAX_PRICE:
            raise invalid(f"price {price} is over the maximum of {MAX_PRICE:.0f}")
        ticks = participant.price_to_ticks(price, spec.tick_size)
        if ticks is None:
            raise invalid(f"price {price} is not a whole number of ticks ({spec.tick_size})")
        price_ticks = ticks
    else:
        time_in_force = time_in_force or types_pb2.IOC
        if time_in_force not in MARKET_TIMES_IN_FORCE:
            name = types_pb2.TimeInForce.Name(time_in_force)
            raise invalid(f"timeInForce {name} is not allowed for a MARKET order: IOC or FOK")
    if len(request.client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH:
        raise invalid(f"clientOrderId is longer than {MAX_CLIENT_ORDER_ID_LENGTH} characters")
    return engine_pb2.PlaceOrderCommand(
        order_id=order_id,
        user_id=caller_id,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        time_in_force=time_in_force,
        price_ticks=price_ticks,
        quantity=quantity,
        client_order_id=request.client_order_id,
    )


def check_choice(field: str, value: int, allowed: Iterable[int], enum) -> None:
    """An enum field: required, and one of `allowed`, named as participants write them (a
    number that is no named value, such as `"timeInForce": 99`, stops here, not at the
    engine)."""
    names = [enum.Name(choice) for choice in allowed]
    listed = ", ".join(names[:-1]) + " or " + names[-1]
    if not value:
        raise invalid(f"{field} is required: {listed}")
    if value not in allowed:
        shown = enum.Name(value) if value in enum.values() else str(value)
        raise invalid(f"{field} must be {listed}, got {shown}")


def amend_order_command(
    request: orders_pb2.AmendOrderRequest,
    caller_id: str,
    order: types_pb2.Order,
    spec: SymbolSpec,
) -> engine_pb2.AmendOrderCommand:
    """The engine command for a valid amend of the caller's open `order`; RequestError naming
    the first bad field. The engine checks the same against the order as it is then."""
    has_price, has_quantity = request.HasField("price"), request.HasField("quantity")
    if not has_price and not has_quantity:
        raise invalid("nothing to change: give price, quantity or both")
    command = engine_pb2.AmendOrderCommand(order_id=order.order_id, user_id=caller_id)
    old_ticks = participant.price_to_ticks(order.price, spec.tick_size)
    new_ticks = old_ticks
    if has_price:
        new_ticks = command.price_ticks = _price_ticks(request.price, spec, "price")
    quantity = order.quantity
    if has_quantity:
        quantity = command.quantity = _amended_quantity(request.quantity, order, spec)
    if new_ticks == old_ticks and quantity == order.quantity:
        raise invalid(
            f"nothing to change: order {order.order_id} is already {quantity} at "
            f"{Decimal(repr(order.price)).normalize():f}"
        )
    return command


def _amended_quantity(quantity: int, order: types_pb2.Order, spec: SymbolSpec) -> int:
    if quantity <= 0:
        raise invalid(f"quantity must be a positive integer, got {quantity}")
    if quantity > MAX_ORDER_QUANTITY:
        raise invalid(f"quantity {quantity} is over the maximum of {MAX_ORDER_QUANTITY}")
    if quantity % spec.lot_size:
        raise invalid(f"quantity {quantity} is not a multiple of the lot size {spec.lot_size}")
    if quantity <= order.filled_quantity:
        raise invalid(
            f"quantity {quantity} must be above the filledQuantity {order.filled_quantity}: it "
            "is the order's new total, filled part included (cancel the order to stop it)"
        )
    return quantity


def check_order_id(order_id: str) -> None:
    if not order_id:
        raise invalid("orderId is required")
    if len(order_id) > 64:
        raise invalid("orderId is longer than 64 characters")


def check_list_filter(status: str) -> None:
    if status not in ORDER_LIST_FILTERS:
        raise invalid(f"status {status!r} must be 'open', 'closed' or absent")


def create_account_command(
    request: admin_pb2.CreateUserRequest,
    api_key_sha256: str,
    listed: dict[str, SymbolSpec],
) -> engine_pb2.CreateAccountCommand:
    """Each granted position gets its cost basis: `costBasis` when given, else the symbol's
    reference price; a symbol without one needs a costBasis, so P&L starts at 0."""
    check_new_user_id(request.user_id)
    if not math.isfinite(request.cash) or request.cash < 0:
        raise invalid(f"cash must be zero or positive, got {request.cash}")
    if request.cash > MAX_CASH:
        raise invalid(f"cash {request.cash} is over the maximum of {MAX_CASH:.0f}")
    cash_units = participant.cash_to_units(request.cash)
    if cash_units is None:
        raise invalid(f"cash {request.cash} has more than 4 decimals")
    for symbol in request.cost_basis:
        if symbol not in request.positions:
            raise invalid(f"costBasis: {symbol} is not one of the granted positions")
    create = engine_pb2.CreateAccountCommand(
        user_id=request.user_id,
        cash_units=cash_units,
        api_key_sha256=api_key_sha256,
        admin=request.admin,
        role=engine_pb2.ACCOUNT_ROLE_BOT if request.role == admin_pb2.BOT else 0,
    )
    for symbol in sorted(request.positions):
        quantity = request.positions[symbol]
        spec = listed.get(symbol)
        if spec is None:
            raise invalid(f"positions: symbol {symbol!r} is not listed")
        if not 0 <= quantity <= MAX_POSITION:
            raise invalid(f"positions: {symbol} quantity must be 0..{MAX_POSITION}, got {quantity}")
        price = request.cost_basis.get(symbol, spec.reference_price)
        if symbol not in request.cost_basis and not price:
            raise invalid(
                f"costBasis: {symbol} has no reference price, so a granted position needs a "
                f'cost basis, e.g. "costBasis": {{"{symbol}": 100.0}}'
            )
        create.grants.add(
            symbol=symbol,
            quantity=quantity,
            price_ticks=_price_ticks(price, spec, f"costBasis.{symbol}"),
        )
    return create


def _price_ticks(price: float, spec: SymbolSpec, field: str) -> int:
    """A positive price that is a whole number of the symbol's ticks, in ticks."""
    if not math.isfinite(price) or price <= 0:
        raise invalid(f"{field} must be a positive number, got {price}")
    if price > MAX_PRICE:
        raise invalid(f"{field} {price} is over the maximum of {MAX_PRICE:.0f}")
    ticks = participant.price_to_ticks(price, spec.tick_size)
    if ticks is None:
        raise invalid(f"{field} {price} is not a whole number of ticks ({spec.tick_size})")
    return ticks


def adjust_cash_command(request: admin_pb2.AdjustCashRequest) -> engine_pb2.AdjustCashCommand:
    check_user_id(request.user_id)
    amount = request.amount
    if not math.isfinite(amount) or amount == 0:
        raise invalid(f"amount must be a non-zero number (negative takes cash), got {amount}")
    if abs(amount) > MAX_CASH:
        raise invalid(f"amount {amount} is over the maximum of {MAX_CASH:.0f}")
    units = participant.cash_to_units(amount)
    if units is None:
        raise invalid(f"amount {amount} has more than 4 decimals")
    return engine_pb2.AdjustCashCommand(user_id=request.user_id, amount_units=units)


MAX_BASKET_COMPONENTS = 20
MAX_BASKET_SHARES = 1_000
"""Per ETF unit: a conversion of the most units an order may have stays within positions."""


def add_symbol_command(request: admin_pb2.AddSymbolRequest) -> engine_pb2.AddSymbolCommand:
    check_symbol_name(request.symbol)
    tick_size = request.tick_size or 0.01
    if not math.isfinite(tick_size) or not 0 < tick_size <= MAX_TICK_SIZE:
        raise invalid(f"tickSize must be in (0, {MAX_TICK_SIZE:.0f}], got {tick_size}")
    tick = Decimal(repr(tick_size))
    if (tick * participant.CASH_UNITS_PER_CURRENCY) % 1:
        raise invalid(f"tickSize {tick_size} must be a multiple of 0.0001")
    lot_size = request.lot_size or 1
    if lot_size > MAX_LOT_SIZE:
        raise invalid(f"lotSize {lot_size} is over the maximum of {MAX_LOT_SIZE}")
    reference_ticks = 0
    if request.reference_price:
        spec = SymbolSpec(request.symbol, tick.normalize(), lot_size, 0.0)
        reference_ticks = _price_ticks(request.reference_price, spec, "referencePrice")
    add = engine_pb2.AddSymbolCommand(
        symbol=request.symbol,
        tick_size=str(tick.normalize()),
        lot_size=lot_size,
        reference_price_ticks=reference_ticks,
    )
    if len(request.basket) > MAX_BASKET_COMPONENTS:
        raise invalid(f"basket: at most {MAX_BASKET_COMPONENTS} components")
    for component in sorted(request.basket):
        check_symbol_name(component, "basket")
        shares = request.basket[component]
        if not 1 <= shares <= MAX_BASKET_SHARES:
            raise invalid(
                f"basket: {component} must be a whole number of shares from 1 to "
                f"{MAX_BASKET_SHARES}, got {shares}"
            )
        add.basket.add(symbol=component, shares=shares)
    fee = request.conversion_fee
    if fee:
        if not request.basket:
            raise invalid("conversionFee applies only to a symbol listed with a basket")
        if not math.isfinite(fee) or not 0 < fee <= MAX_CASH:
            raise invalid(f"conversionFee must be zero or positive, at most {MAX_CASH:.0f}")
        units = participant.cash_to_units(fee)
        if units is None:
            raise invalid(f"conversionFee {fee} has more than 4 decimals")
        add.conversion_fee_units = units
    return add


def convert_command(
    request: orders_pb2.ConvertRequest,
    caller_id: str,
    spec: SymbolSpec | None,
    conversion_id: str,
    etfs: Iterable[str] = (),
) -> engine_pb2.ConvertCommand:
    """The engine command for a valid conversion request; RequestError naming the first bad
    field (the engine checks positions, limits, the fee and the market). `etfs`, the symbols
    listed with a basket, are named when the symbol is not one of them."""
    if request.user_id and request.user_id != caller_id:
        raise RequestError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"userId {request.user_id!r} is not the user of this API key",
        )
    check_symbol_name(request.symbol)
    if spec is None or not spec.convertible:
        names = ", ".join(sorted(etfs))
        choices = f"the ETFs are {names}" if names else "no ETF is listed"
        problem = "is not listed" if spec is None else "is not an ETF (it has no basket)"
        raise invalid(
            f"symbol {request.symbol} {problem}: only an ETF converts, and {choices} "
            "(GET /market/symbols shows each one's basket)"
        )
    if request.direction not in (types_pb2.CREATE, types_pb2.REDEEM):
        raise invalid("direction is required: CREATE or REDEEM")
    quantity = request.quantity
    if not 0 < quantity <= MAX_ORDER_QUANTITY:
        raise invalid(
            f"quantity must be a positive whole number of ETF units, at most "
            f"{MAX_ORDER_QUANTITY}, got {quantity}"
        )
    if quantity % spec.lot_size:
        raise invalid(
            f"quantity {quantity} is not a multiple of {request.symbol}'s lot size {spec.lot_size}"
        )
    return engine_pb2.ConvertCommand(
        conversion_id=conversion_id,
        user_id=caller_id,
        symbol=request.symbol,
        direction=request.direction,
        quantity=quantity,
    )


MAX_HEADLINE_LENGTH = 280
MAX_NEWS_SYMBOLS = 20
MAX_FEE_BPS = 1_000.0
MAX_ROUND_SECONDS = 7 * 24 * 3600.0
NEWS_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_user_id(user_id: str) -> None:
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise invalid(f"userId {user_id!r} must be 1-64 letters, digits, '_', '.' or '-'")


def check_new_user_id(user_id: str) -> None:
    """A new participant's id: well formed and not reserved."""
    check_user_id(user_id)
    if user_id.lower() in RESERVED_USER_IDS:
        raise invalid(
            f"userId {user_id!r} is reserved: the organizer's key (MOCKEX_ADMIN_KEY) is that user"
        )


def publish_news_command(
    request: admin_pb2.PostNewsRequest, news_id: str
) -> engine_pb2.PublishNewsCommand:
    if not NEWS_ID.fullmatch(news_id):
        raise invalid(f"newsId {news_id!r} must be 1 to 64 letters, digits, '-', '_' or '.'")
    headline = request.headline.strip()
    if not headline:
        raise invalid("headline is required")
    if len(headline) > MAX_HEADLINE_LENGTH:
        raise invalid(f"headline is longer than {MAX_HEADLINE_LENGTH} characters")
    if len(request.symbols) > MAX_NEWS_SYMBOLS:
        raise invalid(f"symbols: at most {MAX_NEWS_SYMBOLS}")
    for symbol in request.symbols:
        check_symbol_name(symbol, "symbols")
    change = request.price_change
    if not math.isfinite(change) or not -0.9 <= change <= 10:
        raise invalid(f"priceChange must be between -0.9 and 10 (a fraction), got {change}")
    multiplier = request.volatility_multiplier
    if not math.isfinite(multiplier) or not 0 <= multiplier <= 100:
        raise invalid(f"volatilityMultiplier must be between 0 and 100, got {multiplier}")
    duration = request.duration_seconds
    if not math.isfinite(duration) or not 0 <= duration <= MAX_ROUND_SECONDS:
        raise invalid(f"durationSeconds must be between 0 and {MAX_ROUND_SECONDS:.0f}")
    if (change or multiplier not in (0, 1)) and not request.symbols:
        raise invalid("symbols: news that moves prices must name the symbols it moves")
    return engine_pb2.PublishNewsCommand(
        news_id=news_id,
        headline=headline,
        symbols=list(dict.fromkeys(request.symbols)),
        shock=engine_pb2.NewsShock(
            price_change=change, volatility_multiplier=multiplier, duration_seconds=duration
        ),
    )


def _fee_centi_bps(value: float, field: str) -> int:
    if not math.isfinite(value) or abs(value) > MAX_FEE_BPS:
        raise invalid(f"{field} must be between -{MAX_FEE_BPS:g} and {MAX_FEE_BPS:g} bps")
    centi = round(value * 100)
    if abs(centi - value * 100) > 1e-6:
        raise invalid(f"{field} {value} must be a multiple of 0.01 bps")
    return centi


def changed_settings(
    current: engine_pb2.ExchangeSettings, request: admin_pb2.SetRulesRequest
) -> engine_pb2.ExchangeSettings:
    """The current settings with the rules the request names changed (others kept)."""
    settings = engine_pb2.ExchangeSettings()
    settings.CopyFrom(current)
    for field in (
        "short_limit",
        "max_open_orders",
        "position_limit",
        "mark_max_spread_ticks",
        "message_rate_per_second",
    ):
        if request.HasField(field):
            value = getattr(request, field)
            name = "".join(part.title() if i else part for i, part in enumerate(field.split("_")))
            if value < 0:
                raise invalid(f"{name} must not be negative, got {value}")
            setattr(settings, field, value)
    if request.HasField("maker_fee_bps"):
        settings.maker_fee_centi_bps = _fee_centi_bps(request.maker_fee_bps, "makerFeeBps")
    if request.HasField("taker_fee_bps"):
        settings.taker_fee_centi_bps = _fee_centi_bps(request.taker_fee_bps, "takerFeeBps")
        if settings.taker_fee_centi_bps < 0:
            raise invalid("takerFeeBps must not be negative (a rebate is for makers)")
    if request.HasField("ranking"):
        if request.ranking not in ranking.METRICS.values():
            allowed = ", ".join(types_pb2.RankingMetric.Name(m) for m in ranking.METRICS.values())
            known = request.ranking in types_pb2.RankingMetric.values()
            shown = types_pb2.RankingMetric.Name(request.ranking) if known else request.ranking
            raise invalid(f"ranking must be one of {allowed}, got {shown}")
        settings.ranking = request.ranking
    return settings


def rules_of(settings: engine_pb2.ExchangeSettings) -> admin_pb2.Rules:
    return admin_pb2.Rules(
        short_limit=settings.short_limit,
        max_open_orders=settings.max_open_orders,
        position_limit=settings.position_limit,
        maker_fee_bps=settings.maker_fee_centi_bps / 100,
        taker_fee_bps=settings.taker_fee_centi_bps / 100,
        mark_max_spread_ticks=settings.mark_max_spread_ticks,
        message_rate_per_second=settings.message_rate_per_second,
        rules_version=settings.rules_version,
        ranking=ranking.metric_in_force(settings.ranking),
    )
