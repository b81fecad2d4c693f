"""Bots: small pure agents that turn what a bot may know into orders and cancels.

An agent keeps no state between decisions: `decide(view, rng)` reads an immutable `AgentView`
(the time, its symbol's book top, last trades and fair value, its own cash, position and open
orders, the rules) and a generator seeded for that one decision, and returns intents. So a
decision is a pure function of (scenario, seed, the arrival, the exchange's state), and a
restarted simulator goes on deciding exactly as before. Arrivals are Poisson per agent, drawn
per minute of scenario time from a generator keyed by (seed, agent, minute). Agents keep to the
exchange's grid and rules themselves (tick prices, lot sizes, cash, position and short limits,
the open-order cap), as a careful participant would; what they get wrong the exchange rejects.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from data_svc.draws import generator
from exchange.v1 import types_pb2

if TYPE_CHECKING:
    from data_svc.scenario import Scenario


class Side(IntEnum):
    """The order enums with the public API's numbers (exchange.v1 Side, OrderType,
    TimeInForce), so intents go to the gateway as they are."""

    BUY = types_pb2.BUY
    SELL = types_pb2.SELL


class OrderType(IntEnum):
    LIMIT = types_pb2.LIMIT
    MARKET = types_pb2.MARKET


class TimeInForce(IntEnum):
    GFD = types_pb2.GFD
    IOC = types_pb2.IOC
    FOK = types_pb2.FOK
    GTC = types_pb2.GTC


MAX_ORDER_QUANTITY = 1_000_000
"""The largest order quantity the gateway takes."""

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC = TimeInForce.GFD, TimeInForce.IOC
NS_PER_SECOND = 1_000_000_000
ARRIVAL_BUCKET_SECONDS = 60
MARKET_BUY_CASH_MARGIN = 1.1
"""A MARKET BUY is budgeted at this much above the best ask: the engine holds what taking the
book costs, which the bot sees only at its top."""


# ---- what a bot sees and what it asks for ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: str
    client_order_id: str
    side: Side
    price: int
    remaining: int
    created_at: int
    """Nanoseconds of scenario time."""


@dataclass(frozen=True, slots=True)
class SymbolView:
    """One symbol as a bot sees it: prices in ticks (0: none), quantities in shares."""

    symbol: str
    tick_size: str
    lot_size: int
    tick_cash: int
    """Cash units one tick of one share is worth."""
    best_bid: int
    bid_size: int
    best_ask: int
    ask_size: int
    last_price: int
    last_quantity: int
    fair_value: float
    """In ticks (not rounded)."""
    volatility: float
    """The fair value's volatility per hour now (its regime and news included)."""
    recent_trades: tuple[int, ...]
    """Prices of the last trades, oldest first."""
    position: int
    open_orders: tuple[OpenOrder, ...]
    """The bot's own open orders in this symbol."""

    @property
    def mid(self) -> float:
        """Mid of the book; the fair value when a side is empty."""
        if self.best_bid and self.best_ask:
            return (self.best_bid + self.best_ask) / 2
        return self.fair_value


@dataclass(frozen=True, slots=True)
class Limits:
    position_limit: int = 0
    """Largest position per symbol, long or short (0: none)."""
    short_limit: int = 0
    max_open_orders: int = 0
    """Per user, across symbols (0: none)."""
    worst_fee_bps: float = 0.0
    """The higher of the maker and taker fee: a BUY holds cash for it too."""


@dataclass(frozen=True, slots=True)
class AgentView:
    now: int
    """Nanoseconds of scenario time."""
    decision_id: str
    """Unique among the bot's decisions; client order ids are derived from it."""
    available_cash: int
    """Cash units not held by open BUY orders."""
    open_order_count: int
    """All the bot's open orders, every symbol."""
    limits: Limits
    markets: tuple[SymbolView, ...]

    def market(self, symbol: str) -> SymbolView:
        for market in self.markets:
            if market.symbol == symbol:
                return market
        raise KeyError(symbol)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int
    """Ticks; 0 for MARKET."""
    quantity: int
    client_order_id: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: str


Intent = PlaceOrder | CancelOrder


@dataclass(frozen=True, slots=True)
class Arrival:
    """One decision of one agent: when, its id, and the seed of its generator."""

    time: int
    decision_id: str
    seed: int

    def rng(self) -> random.Random:
        return random.Random(self.seed)


def arrivals(seed: int, agent_id: str, rate: float, minute: int) -> list[Arrival]:
    """The agent's Poisson arrivals (`rate` per second) in one minute of scenario time.

    A pure function of (seed, agent, minute): a restarted simulator recomputes the minute it is
    in and skips the arrivals before now.
    """
    rng = generator(seed, "arrivals", agent_id, minute)
    start = minute * ARRIVAL_BUCKET_SECONDS * NS_PER_SECOND
    found: list[Arrival] = []
    offset = rng.expovariate(rate)
    while offset < ARRIVAL_BUCKET_SECONDS:
        found.append(
            Arrival(
                start + int(offset * NS_PER_SECOND), f"{minute}.{len(found)}", rng.getrandbits(64)
            )
        )
        offset += rng.expovariate(rate)
    return found


# ---- parameters -----------------------------------------------------------------------------


def param(default: Any, **limits: float) -> Any:
    """A parameter with its default and limits (minimum, above, maximum) for the loader."""
    return dataclasses.field(default=default, metadata=limits)


@dataclass(frozen=True, slots=True)
class MarketMakerParams:
    half_spread_ticks: float = param(1.0, minimum=0.5)
    """Least distance of the best quotes from the quote centre."""
    volatility_spread: float = param(0.5, minimum=0)
    """Half spread added per standard deviation of the fair value over the horizon (ticks)."""
    horizon_seconds: float = param(1.0, above=0)
    inventory_skew: float = param(1.0, minimum=0)
    """How far the quote centre moves against the inventory, in half spreads, at
    max_inventory_lots away from its starting position and beyond."""
    max_inventory_lots: int = param(0, minimum=0)
    """0: ten of its largest orders."""
    levels: int = param(2, minimum=1)
    level_spacing_ticks: int = param(1, minimum=1)


@dataclass(frozen=True, slots=True)
class NoiseTraderParams:
    market_order_probability: float = param(0.5, minimum=0, maximum=1)
    limit_offset_ticks: float = param(10.0, minimum=0)
    """A LIMIT order rests up to this many ticks behind the mid, uniformly."""
    order_lifetime_seconds: float = param(30.0, above=0)
    """Its resting orders older than this are cancelled at its next decision."""


@dataclass(frozen=True, slots=True)
class MomentumParams:
    lookback_trades: int = param(20, minimum=2)
    threshold_bps: float = param(10.0, minimum=0)
    """How far the last trade must be from the lookback's average to follow it."""
    aggression_ticks: int = param(2, minimum=0)
    """An IOC order's limit beyond the best opposite price."""
    max_inventory_lots: int = param(0, minimum=0)
    """Lots away from its starting position it may build (0: ten of its largest orders)."""


@dataclass(frozen=True, slots=True)
class ValueParams:
    threshold_bps: float = param(3.0, minimum=0)
    """Edge over its fair-value estimate it needs to trade."""
    fair_value_noise_bps: float = param(2.0, minimum=0)
    """Standard deviation of its estimate's error, drawn at each decision."""
    max_inventory_lots: int = param(0, minimum=0)
    """Lots away from its starting position it may build (0: ten of its largest orders)."""


# ---- the agents -----------------------------------------------------------------------------


class Agent:
    """A bot that trades one symbol as one user. Subclasses implement `decide`."""

    kind: ClassVar[str] = ""
    __slots__ = ("agent_id", "symbol", "rate", "order_lots", "target_position", "params")

    def __init__(
        self,
        agent_id: str,
        symbol: str,
        params: Any,
        rate: float = 1.0,
        order_lots: tuple[int, int] = (1, 1),
        target_position: int = 0,
    ) -> None:
        self.agent_id = agent_id
        self.symbol = symbol
        self.params = params
        self.rate = rate
        self.order_lots = order_lots
        self.target_position = target_position
        """The position it starts with and drifts back to."""

    def decide(self, view: AgentView, rng: random.Random) -> list[Intent]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.agent_id})"

    def _quantity(self, rng: random.Random, market: SymbolView) -> int:
        return rng.randint(*self.order_lots) * market.lot_size

    def _max_inventory(self, configured_lots: int, market: SymbolView) -> int:
        """In shares: a configured number of lots, else ten of its largest orders."""
        return (configured_lots or 10 * self.order_lots[1]) * market.lot_size


class _Budget:
    """What one decision may still commit, counted as the exchange counts it: cash not held,
    open-order slots, and the room the position, short and position limits leave."""

    __slots__ = (
        "cash",
        "fee_factor",
        "slots",
        "buy_room",
        "sell_room",
        "market",
        "agent_id",
        "decision",
        "placed",
    )

    def __init__(self, agent: Agent, view: AgentView, market: SymbolView) -> None:
        limits = view.limits
        self.market = market
        self.cash = view.available_cash
        self.fee_factor = 1 + max(limits.worst_fee_bps, 0.0) / 10_000
        self.slots = (
            limits.max_open_orders - view.open_order_count
            if limits.max_open_orders
            else MAX_ORDER_QUANTITY
        )
        buying = sum(order.remaining for order in market.open_orders if order.side == BUY)
        selling = sum(order.remaining for order in market.open_orders if order.side == SELL)
        self.buy_room = MAX_ORDER_QUANTITY
        self.sell_room = market.position - selling + limits.short_limit
        if limits.position_limit:
            self.buy_room = limits.position_limit - market.position - buying
            self.sell_room = min(self.sell_room, limits.position_limit + market.position - selling)
        self.agent_id = agent.agent_id
        self.decision = view.decision_id
        self.placed = 0

    def cancel(self, order: OpenOrder) -> CancelOrder:
        self.slots += 1
        if order.side == BUY:
            self.buy_room += order.remaining
            self.cash += order.price * order.remaining * self.market.tick_cash
        else:
            self.sell_room += order.remaining
        return CancelOrder(order.order_id)

    def place(
        self, side: Side, type: OrderType, tif: TimeInForce, price: int, quantity: int
    ) -> PlaceOrder | None:
        """The order cut down to what the budget allows, in whole lots; None if nothing is."""
        market = self.market
        if self.slots < 1 or (type == LIMIT and price < 1):
            return None
        if side == BUY:
            unit_price = price if type == LIMIT else market.best_ask * MARKET_BUY_CASH_MARGIN
            unit_cash = max(unit_price, 1) * market.tick_cash * self.fee_factor
            quantity = min(quantity, self.buy_room, int(self.cash // unit_cash))
        else:
            quantity = min(quantity, self.sell_room)
        quantity = min(quantity, MAX_ORDER_QUANTITY)
        quantity -= quantity % market.lot_size
        if quantity < 1:
            return None
        self.slots -= 1
        if side == BUY:
            self.buy_room -= quantity
            self.cash -= int(math.ceil(quantity * unit_cash))
        else:
            self.sell_room -= quantity
        self.placed += 1
        client_order_id = f"{self.agent_id}-{self.decision}-{self.placed}"
        return PlaceOrder(
            market.symbol, side, type, tif, price if type == LIMIT else 0, quantity, client_order_id
        )


class MarketMaker(Agent):
    """Quotes both sides around the fair value (Avellaneda-Stoikov style): the quote centre
    leans against its inventory, and the spread widens with the fair value's volatility. It
    never stops quoting a side by choice (only cash and the limits stop it): a lean of a few
    half spreads puts its quote on the far side of the fair value, where the value traders
    take its inventory off it."""

    kind = "market_maker"
    __slots__ = ()

    def quotes(self, market: SymbolView) -> tuple[list[int], list[int]]:
        """The bid and ask prices it wants, best first."""
        params: MarketMakerParams = self.params
        horizon_sd = (
            market.fair_value * market.volatility * math.sqrt(params.horizon_seconds / 3600)
        )
        half_spread = params.half_spread_ticks + params.volatility_spread * horizon_sd
        max_inventory = self._max_inventory(params.max_inventory_lots, market)
        inventory = market.position - self.target_position
        lean = max(-1.0, min(1.0, inventory / max_inventory))
        centre = market.fair_value - params.inventory_skew * half_spread * lean
        best_bid = math.floor(centre - half_spread)
        best_ask = max(math.ceil(centre + half_spread), best_bid + 1)
        spacing = params.level_spacing_ticks
        bids = [best_bid - level * spacing for level in range(params.levels)]
        asks = [best_ask + level * spacing for level in range(params.levels)]
        return [price for price in bids if price >= 1], asks

    def decide(self, view: AgentView, rng: random.Random) -> list[Intent]:
        market = view.market(self.symbol)
        bids, asks = self.quotes(market)
        wanted = {(BUY, price) for price in bids} | {(SELL, price) for price in asks}
        budget = _Budget(self, view, market)
        intents: list[Intent] = []
        kept = set()
        for order in market.open_orders:
            key = (order.side, order.price)
            if key in wanted and key not in kept:
                kept.add(key)
            else:
                intents.append(budget.cancel(order))
        for side, prices in ((BUY, bids), (SELL, asks)):
            for price in prices:
                if (side, price) not in kept:
                    order = budget.place(side, LIMIT, GFD, price, self._quantity(rng, market))
                    if order is not None:
                        intents.append(order)
        return intents


class NoiseTrader(Agent):
    """Zero intelligence: a random side and size, a MARKET order or a LIMIT resting a random
    distance behind the mid (behind the one side there is, when the other is empty, so it
    refills an empty side rather than trading against the other); its old orders are
    cancelled."""

    kind = "noise"
    __slots__ = ()

    def decide(self, view: AgentView, rng: random.Random) -> list[Intent]:
        params: NoiseTraderParams = self.params
        market = view.market(self.symbol)
        budget = _Budget(self, view, market)
        oldest = view.now - int(params.order_lifetime_seconds * NS_PER_SECOND)
        intents: list[Intent] = [
            budget.cancel(order) for order in market.open_orders if order.created_at <= oldest
        ]
        side = BUY if rng.random() < 0.5 else SELL
        quantity = self._quantity(rng, market)
        if rng.random() < params.market_order_probability:
            opposite = market.best_ask if side == BUY else market.best_bid
            order = budget.place(side, MARKET, IOC, 0, quantity) if opposite else None
        else:
            offset = rng.uniform(0, params.limit_offset_ticks)
            if market.best_bid and market.best_ask:
                reference = market.mid
            else:
                reference = market.best_bid or market.best_ask or market.fair_value
            price = math.floor(reference - offset) if side == BUY else math.ceil(reference + offset)
            order = budget.place(side, LIMIT, GFD, price, quantity)
        if order is not None:
            intents.append(order)
        return intents


class MomentumTrader(Agent):
    """A chartist: follows the last trade's move away from the recent average with an IOC
    order, and gives its position back when the move fades."""

    kind = "momentum"
    __slots__ = ()

    def decide(self, view: AgentView, rng: random.Random) -> list[Intent]:
        params: MomentumParams = self.params
        market = view.market(self.symbol)
        recent = market.recent_trades[-params.lookback_trades :]
        if len(recent) < params.lookback_trades or not (market.best_bid and market.best_ask):
            return []
        average = sum(recent) / len(recent)
        trend_bps = (recent[-1] - average) / average * 10_000
        inventory = market.position - self.target_position
        max_inventory = self._max_inventory(params.max_inventory_lots, market)
        quantity = self._quantity(rng, market)
        if trend_bps > params.threshold_bps and inventory < max_inventory:
            side = BUY
        elif trend_bps < -params.threshold_bps and inventory > -max_inventory:
            side = SELL
        elif abs(trend_bps) < params.threshold_bps / 2 and inventory:
            side = SELL if inventory > 0 else BUY
            quantity = min(quantity, abs(inventory))
        else:
            return []
        if side == BUY:
            price = market.best_ask + params.aggression_ticks
        else:
            price = market.best_bid - params.aggression_ticks
        order = _Budget(self, view, market).place(side, LIMIT, IOC, price, quantity)
        return [] if order is None else [order]


class ValueTrader(Agent):
    """Trades toward its (noisy) estimate of the fair value: takes offers below it and bids
    above it by more than its threshold, with an IOC order limited at that edge."""

    kind = "value"
    __slots__ = ()

    def decide(self, view: AgentView, rng: random.Random) -> list[Intent]:
        params: ValueParams = self.params
        market = view.market(self.symbol)
        estimate = market.fair_value * (1 + rng.gauss(0.0, params.fair_value_noise_bps) / 10_000)
        edge = estimate * params.threshold_bps / 10_000
        inventory = market.position - self.target_position
        max_inventory = self._max_inventory(params.max_inventory_lots, market)
        quantity = self._quantity(rng, market)
        budget = _Budget(self, view, market)
        order = None
        if market.best_ask and market.best_ask <= estimate - edge and inventory < max_inventory:
            order = budget.place(BUY, LIMIT, IOC, math.floor(estimate - edge), quantity)
        elif market.best_bid and market.best_bid >= estimate + edge and inventory > -max_inventory:
            order = budget.place(SELL, LIMIT, IOC, math.ceil(estimate + edge), quantity)
        return [] if order is None else [order]


AGENT_KINDS: dict[str, type[Agent]] = {
    kind.kind: kind for kind in (MarketMaker, NoiseTrader, MomentumTrader, ValueTrader)
}
AGENT_PARAMS: dict[str, type] = {
    "market_maker": MarketMakerParams,
    "noise": NoiseTraderParams,
    "momentum": MomentumParams,
    "value": ValueParams,
}


@dataclass(frozen=True, slots=True)
class Bot:
    """One agent with the account it trades from: its user id is the agent's id."""

    agent: Agent
    cash: float
    """Starting cash, in currency."""
    position: int
    """Starting position in the agent's symbol (shares)."""


def build_bots(scenario: Scenario) -> tuple[Bot, ...]:
    """Every bot of the scenario, in a fixed order: group, symbol, number."""
    bots = []
    for group in scenario.bots:
        kind = AGENT_KINDS[group.kind]
        for symbol in group.symbols:
            for number in range(1, group.count + 1):
                agent = kind(
                    f"{group.name}-{symbol}-{number}",
                    symbol,
                    group.params,
                    group.rate,
                    group.order_lots,
                    group.position,
                )
                bots.append(Bot(agent, group.cash, group.position))
    return tuple(bots)


def order_problems(intent: PlaceOrder, market: SymbolView) -> Sequence[str]:
    """What the exchange would refuse in an order's form (not its cash or position): used by
    the tests, and handy for a service that wants to check before it sends."""
    problems = []
    if intent.quantity < 1 or intent.quantity > MAX_ORDER_QUANTITY:
        problems.append(f"quantity {intent.quantity} is not in 1..{MAX_ORDER_QUANTITY}")
    if intent.quantity % market.lot_size:
        problems.append(f"quantity {intent.quantity} is not a multiple of lot {market.lot_size}")
    if intent.type == LIMIT and (not isinstance(intent.price, int) or intent.price < 1):
        problems.append(f"LIMIT price {intent.price!r} is not a positive whole number of ticks")
    if intent.type == MARKET and intent.time_in_force == GFD:
        problems.append("a MARKET order cannot be GFD")
    if len(intent.client_order_id) > 64:
        problems.append("clientOrderId is longer than 64 characters")
    return problems
