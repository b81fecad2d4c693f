"""What the simulator knows of the exchange: the engine's log folded into the state its bots and
its schedule read.

The log is the truth, so this is a pure fold of `EngineBatch` records (no I/O, no clock): a
restarted simulator reads the log from its start and knows again every symbol's book top and
last trades, each bot's cash, positions and open orders, where the scenario's clock stood, the
rounds, and every piece of news with its shock. Only what the simulator needs is kept; the
accounts of participants are not.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from mockex.participant import CASH_UNITS_PER_CURRENCY

RECENT_TRADES = 50
"""Trade prices kept per symbol (a momentum bot may look back this far)."""
FEE_UNITS_PER_RATE = 1_000_000
"""Hundredths of a basis point: a rate of 1 is 1/1,000,000 of the notional."""
FINISHED = frozenset((types_pb2.FILLED, types_pb2.CANCELLED, types_pb2.EXPIRED, types_pb2.REJECTED))
LOADED = engine_pb2.SCENARIO_STATE_LOADED
RUNNING = engine_pb2.SCENARIO_STATE_RUNNING
PAUSED = engine_pb2.SCENARIO_STATE_PAUSED
STOPPED = engine_pb2.SCENARIO_STATE_STOPPED


@dataclass
class SymbolMarket:
    """One symbol as the log shows it: prices in ticks (0: none)."""

    symbol: str
    tick_size: str
    lot_size: int
    tick_cash: int
    """Cash units one tick of one share is worth."""
    reference_price: int
    bid: int = 0
    bid_size: int = 0
    ask: int = 0
    ask_size: int = 0
    last: int = 0
    last_quantity: int = 0
    halted: bool = False
    recent_trades: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))


@dataclass(frozen=True, slots=True)
class RestingOrder:
    order_id: str
    client_order_id: str
    symbol: str
    side: int
    price: int
    remaining: int
    created_at: int
    """Log time (ns)."""
    hold_fee: int
    """The fee rate (hundredths of a bp) its BUY cash is held at: the worst one when placed."""


@dataclass
class BotAccount:
    """A bot's cash (units), positions and open orders, as its fills and orders leave them."""

    user_id: str
    cash: int
    positions: dict[str, int] = field(default_factory=dict)
    open_orders: dict[str, RestingOrder] = field(default_factory=dict)
    disabled: bool = False

    def held_cash(self, markets: dict[str, SymbolMarket]) -> int:
        """What its open BUYs hold: the remainder at the limit plus the fee at the held rate,
        the engine's rule (docs/matching.md)."""
        held = 0
        for order in self.open_orders.values():
            if order.side == types_pb2.BUY:
                market = markets.get(order.symbol)
                tick_cash = market.tick_cash if market else 0
                notional = order.price * order.remaining * tick_cash
                held += notional + notional * max(order.hold_fee, 0) // FEE_UNITS_PER_RATE
        return held


@dataclass(frozen=True, slots=True)
class PublishedNews:
    news_id: str
    headline: str
    symbols: tuple[str, ...]
    scenario_time: int
    """The scenario's clock when the engine published it (ns)."""
    price_change: float
    volatility_multiplier: float
    duration_seconds: float


@dataclass
class ScenarioStatus:
    """The scenario as the last ScenarioChanged left it, and its clock."""

    state: int = 0
    name: str = ""
    seed: int = 0
    digest: str = ""
    loaded_sequence: int = 0
    """Exchange sequence of the LOADED event: names this event (a scenario loaded again is
    another event), in the ids of its news."""
    elapsed: int = 0
    """The clock at the last change (ns)."""
    changed_at: int = 0
    """Log time of the last change."""

    def clock(self, now: int) -> int:
        """The scenario's clock at log time `now`: it runs only while RUNNING."""
        if self.state == RUNNING:
            return self.elapsed + max(0, now - self.changed_at)
        return self.elapsed


class ExchangeState:
    """The fold of the log. `apply` takes each batch in log order."""

    def __init__(self) -> None:
        self.next_offset = 0
        """The log offset after the last batch applied."""
        self.symbols: dict[str, SymbolMarket] = {}
        self.bots: dict[str, BotAccount] = {}
        """Accounts with the BOT role."""
        self.users: set[str] = set()
        """Every account's user id."""
        self.market_open = True
        """A new exchange starts open (engine_svc.engine.MatchingEngine)."""
        self.settings = engine_pb2.ExchangeSettings()
        """The exchange's rules as the last SettingsChanged left them: the bots' limits."""
        self.scenario = ScenarioStatus()
        self.round = 0
        self.round_open = False
        self.round_ends_at = 0
        self.news: list[PublishedNews] = []
        """The news of the current event (since the scenario was LOADED), in log order."""
        self.news_ids: set[str] = set()
        self.last_time = 0
        """Log time of the last command."""

    def apply(self, batch: engine_pb2.EngineBatch, offset: int) -> None:
        self.next_offset = offset + 1
        self.last_time = batch.command.timestamp_ns or self.last_time
        for event in batch.events:
            kind = event.WhichOneof("event")
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, event)

    def clock(self, now: int) -> int:
        return self.scenario.clock(now)

    # ---- handlers, one per event kind ----------------------------------------------------

    def _symbol_added(self, event: engine_pb2.EngineEvent) -> None:
        added = event.symbol_added
        tick_cash = int(Decimal(added.tick_size) * CASH_UNITS_PER_CURRENCY)
        self.symbols[event.symbol] = SymbolMarket(
            event.symbol, added.tick_size, added.lot_size, tick_cash, added.reference_price_ticks
        )

    def _quote_changed(self, event: engine_pb2.EngineEvent) -> None:
        market = self.symbols.get(event.symbol)
        if market is None:
            return
        quote = event.quote_changed
        market.bid, market.bid_size = quote.bid_ticks, quote.bid_size
        market.ask, market.ask_size = quote.ask_ticks, quote.ask_size
        market.last, market.last_quantity = quote.last_ticks, quote.last_quantity

    def _trade_executed(self, event: engine_pb2.EngineEvent) -> None:
        market = self.symbols.get(event.symbol)
        if market is not None:
            market.recent_trades.append(event.trade_executed.price_ticks)

    def _market_state_changed(self, event: engine_pb2.EngineEvent) -> None:
        market = self.symbols.get(event.symbol)
        if market is not None:
            market.halted = event.market_state_changed.status == types_pb2.HALTED

    def _day_opened(self, event: engine_pb2.EngineEvent) -> None:
        self.market_open = True

    def _day_closed(self, event: engine_pb2.EngineEvent) -> None:
        self.market_open = False

    @property
    def worst_fee(self) -> int:
        """The fee rate a BUY placed now holds cash for (hundredths of a bp)."""
        return max(self.settings.maker_fee_centi_bps, self.settings.taker_fee_centi_bps, 0)

    def _settings_changed(self, event: engine_pb2.EngineEvent) -> None:
        self.settings = event.settings_changed.settings

    def _account_created(self, event: engine_pb2.EngineEvent) -> None:
        created = event.account_created
        self.users.add(created.user_id)
        if created.role != engine_pb2.ACCOUNT_ROLE_BOT:
            return
        account = BotAccount(created.user_id, created.cash_units)
        for grant in created.grants:
            account.positions[grant.symbol] = account.positions.get(grant.symbol, 0) + (
                grant.quantity
            )
        self.bots[created.user_id] = account

    def _cash_adjusted(self, event: engine_pb2.EngineEvent) -> None:
        account = self.bots.get(event.cash_adjusted.user_id)
        if account is not None:
            account.cash = event.cash_adjusted.cash_units

    def _user_disabled(self, event: engine_pb2.EngineEvent) -> None:
        account = self.bots.get(event.user_disabled.user_id)
        if account is not None:
            account.disabled = True

    def _user_enabled(self, event: engine_pb2.EngineEvent) -> None:
        account = self.bots.get(event.user_enabled.user_id)
        if account is not None:
            account.disabled = False

    def _order_accepted(self, event: engine_pb2.EngineEvent) -> None:
        order = event.order_accepted.order
        account = self.bots.get(order.user_id)
        if account is None or order.status in FINISHED:
            return
        account.open_orders[order.order_id] = RestingOrder(
            order.order_id,
            order.client_order_id,
            order.symbol,
            order.side,
            order.price_ticks,
            order.quantity - order.filled_quantity,
            order.created_ns,
            self.worst_fee,
        )

    def _order_filled(self, event: engine_pb2.EngineEvent) -> None:
        filled = event.order_filled
        order = filled.order
        account = self.bots.get(order.user_id)
        if account is None:
            return
        market = self.symbols.get(order.symbol)
        notional = filled.price_ticks * filled.quantity * (market.tick_cash if market else 0)
        sign = 1 if order.side == types_pb2.BUY else -1
        account.cash -= sign * notional + filled.fee_units
        account.positions[order.symbol] = account.positions.get(order.symbol, 0) + (
            sign * filled.quantity
        )
        resting = account.open_orders.get(order.order_id)
        if order.status in FINISHED:
            account.open_orders.pop(order.order_id, None)
        elif resting is not None:
            remaining = order.quantity - order.filled_quantity
            account.open_orders[order.order_id] = dataclasses.replace(resting, remaining=remaining)

    def _order_finished(self, order: engine_pb2.OrderState) -> None:
        account = self.bots.get(order.user_id)
        if account is not None:
            account.open_orders.pop(order.order_id, None)

    def _order_cancelled(self, event: engine_pb2.EngineEvent) -> None:
        self._order_finished(event.order_cancelled.order)

    def _order_expired(self, event: engine_pb2.EngineEvent) -> None:
        self._order_finished(event.order_expired.order)

    def _news_published(self, event: engine_pb2.EngineEvent) -> None:
        news = event.news_published
        self.news_ids.add(news.news_id)
        self.news.append(
            PublishedNews(
                news.news_id,
                news.headline,
                tuple(news.symbols),
                self.scenario.clock(event.timestamp_ns),
                news.shock.price_change,
                news.shock.volatility_multiplier,
                news.shock.duration_seconds,
            )
        )

    def _scenario_changed(self, event: engine_pb2.EngineEvent) -> None:
        changed = event.scenario_changed
        scenario = self.scenario
        if changed.state == LOADED:
            scenario.loaded_sequence = event.exchange_sequence
            self.news = []
            self.round = 0
        scenario.state = changed.state
        scenario.name, scenario.seed, scenario.digest = changed.name, changed.seed, changed.digest
        scenario.elapsed = changed.elapsed_ns
        scenario.changed_at = event.timestamp_ns
        self.round_open = bool(changed.round_ends_at_ns)
        self.round_ends_at = changed.round_ends_at_ns

    def _round_started(self, event: engine_pb2.EngineEvent) -> None:
        started = event.round_started
        self.round, self.round_open, self.round_ends_at = started.round, True, started.ends_at_ns

    def _round_ended(self, event: engine_pb2.EngineEvent) -> None:
        self.round_open = False
        self.round_ends_at = 0


_HANDLERS = {
    "symbol_added": ExchangeState._symbol_added,
    "quote_changed": ExchangeState._quote_changed,
    "trade_executed": ExchangeState._trade_executed,
    "market_state_changed": ExchangeState._market_state_changed,
    "trading_day_opened": ExchangeState._day_opened,
    "trading_day_closed": ExchangeState._day_closed,
    "settings_changed": ExchangeState._settings_changed,
    "account_created": ExchangeState._account_created,
    "cash_adjusted": ExchangeState._cash_adjusted,
    "user_disabled": ExchangeState._user_disabled,
    "user_enabled": ExchangeState._user_enabled,
    "order_accepted": ExchangeState._order_accepted,
    "order_filled": ExchangeState._order_filled,
    "order_cancelled": ExchangeState._order_cancelled,
    "order_expired": ExchangeState._order_expired,
    "news_published": ExchangeState._news_published,
    "scenario_changed": ExchangeState._scenario_changed,
    "round_started": ExchangeState._round_started,
    "round_ended": ExchangeState._round_ended,
}
