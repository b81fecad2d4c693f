"""Events the engine emits, in past tense: immutable values, cheap to build on the hot path.

Every event starts with (symbol, sequence, timestamp). `sequence` counts the symbol's market
data events (book, trade, quote, listing), +1 each, so market-data consumers see no gaps; order
events and market states carry the current value without increasing it; it is 0 for events of no
symbol's stream (exchange-wide events, refusals, and orders rejected for an unknown symbol).
Exchange-wide events (trading day, halts, listings, accounts, settings) carry an
`exchange_sequence` of their own, +1 each.

Order events carry the order's terms (an immutable OrderTerms) and its state at that moment,
never the live Order: a consumer reading an event later reads what was true when it happened.
"""

from __future__ import annotations

from typing import NamedTuple

from engine_svc.orders import (
    Direction,
    OrderStatus,
    OrderTerms,
    Reason,
    Refusal,
    Side,
    SymbolStatus,
)
from engine_svc.rules import ExchangeSettings


class OrderAccepted(NamedTuple):
    """Accepted and not yet matched: NEW, nothing filled."""

    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms


class OrderRejected(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms
    reason: Reason


class OrderFilled(NamedTuple):
    """One execution of one order, with the order's filled totals and status after it."""

    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms
    trade_id: str
    price: int
    quantity: int
    filled_quantity: int
    filled_notional: int
    status: OrderStatus
    fee: int
    """What this execution cost the order's owner in cash units (negative: a rebate)."""


class OrderCancelled(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms
    reason: Reason
    filled_quantity: int
    filled_notional: int


class OrderExpired(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms
    reason: Reason
    filled_quantity: int
    filled_notional: int


class CancelRejected(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order_id: str
    user_id: str
    reason: Reason


class OrderAmended(NamedTuple):
    """A resting order's price and/or quantity changed, its id kept; `order` holds the new
    terms, and its fills (a crossing new price) follow as OrderFilled events."""

    symbol: str
    sequence: int
    timestamp: int
    order: OrderTerms
    old_price: int
    old_quantity: int
    priority_kept: bool
    """A smaller quantity at the same price keeps its place; anything else goes to the back."""
    filled_quantity: int
    filled_notional: int
    status: OrderStatus


class AmendRejected(NamedTuple):
    """An amend not carried out: the order is as it was."""

    symbol: str
    sequence: int
    timestamp: int
    order_id: str
    user_id: str
    reason: Reason
    message: str


class TradeExecuted(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    trade_id: str
    price: int
    quantity: int
    aggressor_side: Side
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str


class BookLevelChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    side: Side
    price: int
    quantity: int
    order_count: int


class QuoteChanged(NamedTuple):
    """Top of book and the day's statistics; a price of 0 means none."""

    symbol: str
    sequence: int
    timestamp: int
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    last: int
    last_quantity: int
    volume: int
    open: int
    high: int
    low: int
    mark: int
    """What positions are valued at, in cash units per share (scoring.mark_units); 0: none."""


class MarketStateChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    status: SymbolStatus


class SymbolAdded(NamedTuple):
    """A listing: the symbol's first market-data event and an exchange-wide event."""

    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    tick_size: str
    lot_size: int
    reference_price: int
    basket: tuple[tuple[str, int], ...] = ()
    """An ETF's (component, whole shares per unit), by symbol; empty for other symbols."""
    conversion_fee: int = 0
    """Cash units one conversion request costs."""


class TradingDayOpened(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int


class TradingDayClosed(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int


class TradingHalted(NamedTuple):
    """`symbol` is the halted one, or "" for every symbol; not part of its market data."""

    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int


class TradingResumed(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int


class Grant(NamedTuple):
    """A starting position and the cost basis per share (ticks) it is valued at."""

    symbol: str
    quantity: int
    price: int


class AccountCreated(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    user_id: str
    admin: bool
    api_key_sha256: str
    cash: int
    grants: tuple[Grant, ...]
    starting_value: int
    role: int


class SettingsChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    settings: ExchangeSettings
    previous: ExchangeSettings


class CashAdjusted(NamedTuple):
    """Private to the account's owner, so not exchange-wide."""

    symbol: str
    sequence: int
    timestamp: int
    user_id: str
    amount: int
    cash: int
    starting_value: int


class CommandRefused(NamedTuple):
    """A command not carried out; `order_id` names the first order of a duplicate
    clientOrderId."""

    symbol: str
    sequence: int
    timestamp: int
    reason: Refusal
    message: str
    user_id: str
    order_id: str


class UserDisabled(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    user_id: str


class UserEnabled(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    user_id: str


class ApiKeyChanged(NamedTuple):
    """`api_key_sha256` empty: revoked. `previous_sha256` no longer works."""

    symbol: str
    sequence: int
    timestamp: int
    user_id: str
    previous_sha256: str
    api_key_sha256: str
    admin: bool


class NewsShock(NamedTuple):
    """What news does to fair value: the simulator's, never shown to participants."""

    price_change: float
    volatility_multiplier: float
    duration_seconds: float


class NewsPublished(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    news_id: str
    headline: str
    symbols: tuple[str, ...]
    shock: NewsShock


class ScenarioChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    state: int
    name: str
    seed: int
    digest: str
    rounds: int
    elapsed: int
    """The scenario's clock at this change (ns of log time RUNNING since LOADED)."""
    participant_cash: int
    """What a participant created under this scenario starts with (cash units, grants)."""
    participant_grants: tuple[Grant, ...]
    round_ends_at: int
    """When the round in progress ends (0: none); a pause moves it by the pause's length."""
    next_round_starts_at: int
    """When the next round starts, during a break (0: none)."""


class RoundStarted(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    round: int
    rounds: int
    ends_at: int


class RoundEnded(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    round: int
    next_round_starts_at: int
    """Log time the next round is scheduled to start (0: no next round, or not known)."""


class AccountReset(NamedTuple):
    """A participant's cash and positions put back to where they started (a round start)."""

    symbol: str
    sequence: int
    timestamp: int
    user_id: str
    cash: int


class ConversionLeg(NamedTuple):
    """One symbol's part of a conversion: `quantity` received (+) or given up (-), the cost
    basis moved with it, and the position after."""

    symbol: str
    quantity: int
    cost: int
    position: int


class ConversionExecuted(NamedTuple):
    """ETF units created or redeemed: private to the user; `symbol` is the ETF, whose current
    sequence it carries."""

    symbol: str
    sequence: int
    timestamp: int
    conversion_id: str
    user_id: str
    direction: Direction
    quantity: int
    legs: tuple[ConversionLeg, ...]
    """The ETF first, then the components in symbol order."""
    fee: int
    realized_pnl: int
    """Realized by covering a short position with what was received (0 otherwise)."""
    cash: int
    """The user's cash after the fee."""


class ConversionRejected(NamedTuple):
    """A conversion not carried out: nothing moved."""

    symbol: str
    sequence: int
    timestamp: int
    conversion_id: str
    user_id: str
    direction: Direction
    quantity: int
    reason: Reason
    message: str


class ParticipantScore(NamedTuple):
    user_id: str
    equity: int
    pnl: int
    """Over the whole event: the finished rounds' P&L plus the current one's."""
    realized_pnl: int
    max_drawdown: int
    sharpe: float
    round_pnls: tuple[int, ...]
    fees_paid: int


class ScoresSampled(NamedTuple):
    """Every ranked participant's score, once a minute of log time and at each round's end."""

    symbol: str
    sequence: int
    timestamp: int
    exchange_sequence: int
    scores: tuple[ParticipantScore, ...]


Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCancelled
    | OrderExpired
    | CancelRejected
    | OrderAmended
    | AmendRejected
    | TradeExecuted
    | BookLevelChanged
    | QuoteChanged
    | MarketStateChanged
    | SymbolAdded
    | TradingDayOpened
    | TradingDayClosed
    | TradingHalted
    | TradingResumed
    | AccountCreated
    | SettingsChanged
    | CashAdjusted
    | CommandRefused
    | UserDisabled
    | UserEnabled
    | ApiKeyChanged
    | NewsPublished
    | ScenarioChanged
    | RoundStarted
    | RoundEnded
    | AccountReset
    | ScoresSampled
    | ConversionExecuted
    | ConversionRejected
)

EXCHANGE_WIDE = (
    SymbolAdded,
    TradingDayOpened,
    TradingDayClosed,
    TradingHalted,
    TradingResumed,
    AccountCreated,
    SettingsChanged,
    NewsPublished,
    ScenarioChanged,
    RoundStarted,
    RoundEnded,
    ScoresSampled,
)
"""Event types that carry an exchange_sequence."""
