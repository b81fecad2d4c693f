"""The matching engine: commands and times in, events out. No I/O, no clock, no randomness.

Continuous price-time priority per symbol; a trade executes at the resting order's price. Accounts
are checked (risk.py) and moved (settlement.py) for orders that carry a user id; user-less orders
(benchmark flows) skip accounts and self-trade prevention. Business-rule violations become
REJECTED orders with a reason, and commands the engine cannot carry out become CommandRefused
events: rejections are data, never exceptions.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from engine_svc import risk
from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, PARTICIPANT, Account
from engine_svc.book import BookSide, OrderBook
from engine_svc.events import (
    AccountCreated,
    AccountReset,
    AmendRejected,
    ApiKeyChanged,
    BookLevelChanged,
    CancelRejected,
    CashAdjusted,
    CommandRefused,
    ConversionExecuted,
    ConversionRejected,
    Event,
    Grant,
    MarketStateChanged,
    NewsPublished,
    NewsShock,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    ParticipantScore,
    QuoteChanged,
    RoundEnded,
    RoundStarted,
    ScenarioChanged,
    ScoresSampled,
    SettingsChanged,
    SymbolAdded,
    TradeExecuted,
    TradingDayClosed,
    TradingDayOpened,
    TradingHalted,
    TradingResumed,
    UserDisabled,
    UserEnabled,
)
from engine_svc.orders import (
    MAX_ORDER_QUANTITY,
    Direction,
    Order,
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Refusal,
    Side,
    SymbolStatus,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from engine_svc.scoring import MINUTE_NS, Score, equity, mark_units
from engine_svc.settlement import convert, settle

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CANCELLED = OrderStatus.CANCELLED
EXPIRED = OrderStatus.EXPIRED
GFD = TimeInForce.GFD
FOK = TimeInForce.FOK
RESTING_TIME_IN_FORCE = (GFD, TimeInForce.GTC)
_new = tuple.__new__
"""Events are built with tuple.__new__(EventClass, (fields...)): it skips the NamedTuple's
Python-level __new__, one call per event on the hot path (measured ~1.13x on the engine bench)."""
VALID_SIDES = frozenset(Side)
VALID_TYPES = frozenset(OrderType)
VALID_TIME_IN_FORCE = frozenset(TimeInForce)
VALID_DIRECTIONS = frozenset(Direction)


class SymbolState:
    """One instrument: its specification, book, event sequence and the day's statistics."""

    __slots__ = (
        "symbol",
        "tick_size",
        "tick_size_value",
        "tick_cash",
        "lot_size",
        "reference_price",
        "book",
        "sequence",
        "halted",
        "trade_count",
        "last",
        "last_quantity",
        "volume",
        "open",
        "high",
        "low",
        "last_quote",
        "basket",
        "conversion_fee",
    )

    def __init__(
        self, symbol: str, tick_size: str, lot_size: int, reference_price: int = 0
    ) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.tick_size_value = float(tick_size)
        self.tick_cash = int(Decimal(tick_size) * CASH_UNITS_PER_CURRENCY)
        self.lot_size = lot_size
        self.reference_price = reference_price
        """Ticks granted positions are valued at when no cost basis is given; 0 for none."""
        self.book = OrderBook(symbol)
        self.sequence = 0
        self.halted = False
        self.trade_count = 0
        self.last = 0
        self.last_quantity = 0
        self.volume = 0
        self.open = 0
        self.high = 0
        self.low = 0
        self.last_quote: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
        self.basket: tuple[tuple[str, int], ...] = ()
        """An ETF's (component, whole shares per unit), by symbol; empty for other symbols."""
        self.conversion_fee = 0
        """Cash units one conversion request costs."""


def parse_tick_size(tick_size: str) -> Decimal:
    """A tick must be positive and a whole number of cash units (0.0001)."""
    try:
        value = Decimal(tick_size)
    except InvalidOperation as exc:
        raise ValueError(f"tickSize {tick_size!r} is not a number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"tickSize {tick_size!r} must be positive")
    if (value * CASH_UNITS_PER_CURRENCY) % 1:
        raise ValueError(f"tickSize {tick_size!r} must be a multiple of 0.0001")
    return value


def _price_text(state: SymbolState, ticks: int) -> str:
    """A price in ticks as the participant writes it: 101.25."""
    return format((Decimal(state.tick_size) * ticks).normalize(), "f")


def _refused(
    reason: Refusal, message: str, now: int, user_id: str = "", order_id: str = ""
) -> CommandRefused:
    return CommandRefused("", 0, now, reason, message, user_id, order_id)


def _unknown_account(user_id: str, now: int) -> CommandRefused:
    return _refused(Refusal.UNKNOWN_ACCOUNT, f"userId {user_id} has no account", now, user_id)


def _grant_positions(account: Account) -> None:
    """Give the account its starting positions at their cost (a new account, a round reset)."""
    for symbol, quantity, cost in account.grants:
        position = account.position(symbol)
        position.quantity += quantity
        position.cost += cost


SCENARIO_LOADED = 1
SCENARIO_RUNNING = 2
SCENARIO_PAUSED = 3
"""ScenarioState values (proto): LOADED restarts the scenario's clock, RUNNING runs it, PAUSED
stops it until RUNNING again."""


class Competition:
    """Where the event stands: the simulator's scenario and the round in progress."""

    __slots__ = (
        "scenario_state",
        "scenario_name",
        "seed",
        "digest",
        "rounds",
        "round",
        "round_ends_at",
        "round_open",
        "elapsed",
        "running_since",
        "paused_at",
        "next_round_starts_at",
        "participant_cash",
        "participant_grants",
        "news_ids",
        "paused_symbols",
    )

    def __init__(self) -> None:
        self.scenario_state = 0
        self.scenario_name = ""
        self.seed = 0
        self.digest = ""
        self.rounds = 0
        self.round = 0
        self.round_ends_at = 0
        self.round_open = False
        self.elapsed = 0
        """Log time the scenario ran (RUNNING) before `running_since`."""
        self.running_since = 0
        """Log time it started RUNNING now; 0 when it is not running."""
        self.paused_at = 0
        """Log time it was PAUSED (0: not paused): resuming moves the round's times on."""
        self.next_round_starts_at = 0
        self.participant_cash = 0
        """What an account created with the scenario's terms starts with."""
        self.participant_grants: tuple[Grant, ...] = ()
        self.news_ids: set[str] = set()
        """Every news id published: a repeated one is refused, so publishing is idempotent."""
        self.paused_symbols: tuple[str, ...] = ()
        """The symbols the pause halted, which running again (or stopping) resumes; a symbol
        halted before the pause stays halted."""


class MatchingEngine:
    """All symbols and accounts of one exchange. The single writer: call it from one thread."""

    def __init__(self, settings: ExchangeSettings | None = None, market_open: bool = True) -> None:
        self.settings = settings or ExchangeSettings()
        self.market_open = market_open
        self.symbols: dict[str, SymbolState] = {}
        self.accounts: dict[str, Account] = {}
        self.open_orders: dict[str, Order] = {}
        self.open_order_counts: dict[str, int] = {}
        self.client_orders: dict[tuple[str, str], str] = {}
        """(user id, clientOrderId) -> the order it was first given to, for the trading day."""
        self.exchange_sequence = 0
        self.fees_collected = 0
        """The exchange's fee account, in cash units: what fees moved out of accounts."""
        self.scores: dict[str, Score] = {}
        """Ranked participants' running scores."""
        self.last_sample_minute: int | None = None
        self.competition = Competition()

    # ---- admin commands -------------------------------------------------------------------

    def configure(self, settings: ExchangeSettings, now: int) -> list[Event]:
        """Take new settings; they apply to orders from now on (a resting order keeps the maker
        fee it was accepted at)."""
        previous = self.settings
        if settings == previous:
            return []
        self.settings = settings
        return [SettingsChanged("", 0, now, self._next_exchange_sequence(), settings, previous)]

    def add_symbol(
        self,
        symbol: str,
        now: int,
        tick_size: str = "0.01",
        lot_size: int = 1,
        reference_price: int = 0,
        basket: tuple[tuple[str, int], ...] = (),
        conversion_fee: int = 0,
    ) -> list[Event]:
        """List a symbol; with a basket, an ETF that participants can create and redeem
        (convert) for `conversion_fee` cash units a request."""
        if symbol in self.symbols:
            return [_refused(Refusal.SYMBOL_EXISTS, f"symbol {symbol} is already listed", now)]
        if lot_size < 1:
            return [_refused(Refusal.INVALID_ARGUMENT, "lotSize must be at least 1", now)]
        if reference_price < 0:
            message = "referencePrice must not be negative"
            return [_refused(Refusal.INVALID_ARGUMENT, message, now)]
        try:
            tick_size = str(parse_tick_size(tick_size))
        except ValueError as exc:
            return [_refused(Refusal.INVALID_ARGUMENT, str(exc), now)]
        basket = tuple(sorted(basket))
        refusal = self._basket_refusal(symbol, lot_size, basket, conversion_fee, now)
        if refusal is not None:
            return [refusal]
        state = self.symbols[symbol] = SymbolState(symbol, tick_size, lot_size, reference_price)
        state.sequence = 1
        state.basket, state.conversion_fee = basket, conversion_fee
        return [
            SymbolAdded(
                symbol,
                1,
                now,
                self._next_exchange_sequence(),
                tick_size,
                lot_size,
                reference_price,
                basket,
                conversion_fee,
            )
        ]

    def _basket_refusal(
        self,
        symbol: str,
        lot_size: int,
        basket: tuple[tuple[str, int], ...],
        conversion_fee: int,
        now: int,
    ) -> CommandRefused | None:
        """An ETF's components are listed symbols that are not ETFs, each in whole shares that
        make whole lots of it per lot of the ETF, so what a conversion hands over can be sold."""
        if conversion_fee < 0:
            return _refused(Refusal.INVALID_ARGUMENT, "conversionFee must not be negative", now)
        if conversion_fee and not basket:
            message = "conversionFee applies only to a symbol listed with a basket"
            return _refused(Refusal.INVALID_ARGUMENT, message, now)
        components = [component for component, _ in basket]
        if len(set(components)) != len(components):
            return _refused(Refusal.INVALID_ARGUMENT, "basket names a symbol twice", now)
        for component, shares in basket:
            listed = self.symbols.get(component)
            if component == symbol:
                message = f"basket: {symbol} cannot be a component of itself"
                return _refused(Refusal.INVALID_ARGUMENT, message, now)
            if listed is None:
                message = f"basket: symbol {component} is not listed (list the components first)"
                return _refused(Refusal.INVALID_ARGUMENT, message, now)
            if listed.basket:
                message = f"basket: {component} has a basket itself; components must not"
                return _refused(Refusal.INVALID_ARGUMENT, message, now)
            if shares < 1:
                message = f"basket: {component} must be a whole number of shares, at least 1"
                return _refused(Refusal.INVALID_ARGUMENT, message, now)
            if shares * lot_size % listed.lot_size:
                message = (
                    f"basket: {shares} {component} per unit times lotSize {lot_size} is not a "
                    f"whole number of {component}'s lots of {listed.lot_size}"
                )
                return _refused(Refusal.INVALID_ARGUMENT, message, now)
        return None

    def create_account(
        self,
        user_id: str,
        cash: int,
        now: int,
        grants: tuple[Grant, ...] = (),
        admin: bool = False,
        api_key_sha256: str = "",
        role: int = PARTICIPANT,
    ) -> list[Event]:
        """Open an account with `cash` (cash units) and starting positions at a cost basis.

        A grant's price of 0 takes the symbol's reference price (0 if it has none).
        """
        if not user_id:
            return [_refused(Refusal.INVALID_ARGUMENT, "userId must not be empty", now)]
        if cash < 0:
            return [_refused(Refusal.INVALID_ARGUMENT, "cash must not be negative", now, user_id)]
        if user_id in self.accounts:
            message = f"userId {user_id} already exists"
            return [_refused(Refusal.ACCOUNT_EXISTS, message, now, user_id)]
        valued: list[Grant] = []
        for grant in grants:
            state = self.symbols.get(grant.symbol)
            if state is None:
                message = f"positions: symbol {grant.symbol} is not listed"
                return [_refused(Refusal.UNKNOWN_SYMBOL, message, now, user_id)]
            if grant.quantity < 0 or grant.price < 0:
                message = f"positions: {grant.symbol} quantity and cost basis must not be negative"
                return [_refused(Refusal.INVALID_ARGUMENT, message, now, user_id)]
            valued.append(Grant(grant.symbol, grant.quantity, grant.price or state.reference_price))
        account = Account(user_id, cash, admin=admin, api_key_sha256=api_key_sha256, role=role)
        account.grants = tuple(
            (grant.symbol, grant.quantity, grant.quantity * grant.price * state.tick_cash)
            for grant in valued
            for state in (self.symbols[grant.symbol],)
        )
        _grant_positions(account)
        account.starting_value = cash + sum(cost for _, _, cost in account.grants)
        self.accounts[user_id] = account
        if account.ranked:
            self.scores[user_id] = Score()
        return [
            AccountCreated(
                "",
                0,
                now,
                self._next_exchange_sequence(),
                user_id,
                admin,
                api_key_sha256,
                cash,
                tuple(valued),
                account.starting_value,
                role,
            )
        ]

    def adjust_cash(self, user_id: str, amount: int, now: int) -> list[Event]:
        """Give (amount > 0) or take cash; the starting value moves with it, the P&L does not."""
        account = self.accounts.get(user_id)
        if account is None:
            message = f"userId {user_id} has no account"
            return [_refused(Refusal.UNKNOWN_ACCOUNT, message, now, user_id)]
        if account.cash + amount < account.reserved_cash:
            units = CASH_UNITS_PER_CURRENCY
            message = (
                f"amount would leave cash of {(account.cash + amount) / units:g}, below the "
                f"{account.reserved_cash / units:g} the account's open orders hold"
            )
            return [_refused(Refusal.INVALID_ARGUMENT, message, now, user_id)]
        account.cash += amount
        account.starting_value += amount
        account.starting_cash += amount
        return [CashAdjusted("", 0, now, user_id, amount, account.cash, account.starting_value)]

    def disable_user(self, user_id: str, now: int) -> list[Event]:
        """Stop a user: every open order cancelled, new ones REJECTED until enabled again."""
        account = self.accounts.get(user_id)
        if account is None:
            return [_unknown_account(user_id, now)]
        events = self._cancel_orders_of(user_id, "", Reason.CANCELLED_BY_ADMIN, now)
        if not account.disabled:
            account.disabled = True
            events.append(UserDisabled("", 0, now, user_id))
        return events

    def enable_user(self, user_id: str, now: int) -> list[Event]:
        account = self.accounts.get(user_id)
        if account is None:
            return [_unknown_account(user_id, now)]
        if not account.disabled:
            return []
        account.disabled = False
        return [UserEnabled("", 0, now, user_id)]

    def set_api_key(self, user_id: str, api_key_sha256: str, now: int) -> list[Event]:
        """A new key (its SHA-256) for the user, or none: the old one stops working at once."""
        account = self.accounts.get(user_id)
        if account is None:
            return [_unknown_account(user_id, now)]
        previous = account.api_key_sha256
        account.api_key_sha256 = api_key_sha256
        return [ApiKeyChanged("", 0, now, user_id, previous, api_key_sha256, account.admin)]

    def cancel_all(
        self, user_id: str, symbol: str, now: int, is_admin: bool = False
    ) -> list[Event]:
        """Cancel the user's open orders (of one symbol, or all)."""
        if user_id not in self.accounts:
            return [_unknown_account(user_id, now)]
        if symbol and symbol not in self.symbols:
            return [
                _refused(Refusal.UNKNOWN_SYMBOL, f"symbol {symbol} is not listed", now, user_id)
            ]
        reason = Reason.CANCELLED_BY_ADMIN if is_admin else Reason.CANCELLED_BY_OWNER
        return self._cancel_orders_of(user_id, symbol, reason, now)

    def _cancel_orders_of(self, user_id: str, symbol: str, reason: Reason, now: int) -> list[Event]:
        events: list[Event] = []
        mine = [
            order
            for order in self.open_orders.values()
            if order.user_id == user_id and (not symbol or order.symbol == symbol)
        ]
        touched: dict[str, SymbolState] = {}
        for order in mine:
            state = self.symbols[order.symbol]
            book_side = state.book.bids if order.side == BUY else state.book.asks
            self._take_off_book(state, book_side, order, events, now)
            self._finish(state, order, CANCELLED, reason, now, events)
            touched[state.symbol] = state
        for state in touched.values():
            self._emit_quote_if_changed(state, events, now)
        return events

    def publish_news(
        self, news_id: str, headline: str, symbols: tuple[str, ...], shock: NewsShock, now: int
    ) -> list[Event]:
        unknown = [symbol for symbol in symbols if symbol not in self.symbols]
        if unknown:
            message = f"symbols: {', '.join(unknown)} not listed"
            return [_refused(Refusal.UNKNOWN_SYMBOL, message, now)]
        if not headline:
            return [_refused(Refusal.INVALID_ARGUMENT, "headline must not be empty", now)]
        if not news_id:
            return [_refused(Refusal.INVALID_ARGUMENT, "newsId must not be empty", now)]
        if news_id in self.competition.news_ids:
            return [_refused(Refusal.DUPLICATE_NEWS_ID, f"newsId {news_id} was published", now)]
        self.competition.news_ids.add(news_id)
        return [
            NewsPublished(
                "", 0, now, self._next_exchange_sequence(), news_id, headline, symbols, shock
            )
        ]

    def set_scenario(
        self,
        state: int,
        now: int,
        name: str = "",
        seed: int = 0,
        digest: str = "",
        rounds: int = 0,
        participant_cash: int = 0,
        participant_grants: tuple[Grant, ...] = (),
    ) -> list[Event]:
        """The simulator's scenario changed state. Its clock is the log time it has been
        RUNNING since it was LOADED, carried in every ScenarioChanged.

        LOADED starts a new event: it names the scenario (the other fields are kept from it
        on), ends a round still open, numbers rounds from 1 again and starts the scores'
        history afresh. A pause stops the clock and halts trading in every symbol; running
        again (or stopping) resumes them and moves the round's end (or the next round's
        start) on by the pause's length."""
        competition = self.competition
        events: list[Event] = []
        if state == SCENARIO_LOADED:
            if not name:
                return [_refused(Refusal.INVALID_ARGUMENT, "a loaded scenario needs a name", now)]
            if competition.round_open:
                events.extend(self.end_round(competition.round, now))
            competition.elapsed = competition.running_since = competition.paused_at = 0
            competition.scenario_name, competition.seed = name, seed
            competition.digest, competition.rounds = digest, rounds
            competition.participant_cash = participant_cash
            competition.participant_grants = participant_grants
            competition.round = competition.round_ends_at = 0
            competition.next_round_starts_at = 0
            for score in self.scores.values():
                score.banked = score.round_base = 0
                score.round_pnls = []
                score.restart()
        elif not competition.scenario_name:
            return [_refused(Refusal.FAILED_PRECONDITION, "no scenario is loaded", now)]
        elif state == SCENARIO_RUNNING:
            if competition.paused_at:
                pause = now - competition.paused_at
                if competition.round_open and competition.round_ends_at:
                    competition.round_ends_at += pause
                if competition.next_round_starts_at:
                    competition.next_round_starts_at += pause
                competition.paused_at = 0
            competition.running_since = competition.running_since or now
        else:
            if competition.running_since:
                competition.elapsed += now - competition.running_since
                competition.running_since = 0
            competition.paused_at = now if state == SCENARIO_PAUSED else 0
        competition.scenario_state = state
        events.append(
            ScenarioChanged(
                "",
                0,
                now,
                self._next_exchange_sequence(),
                state,
                competition.scenario_name,
                competition.seed,
                competition.digest,
                competition.rounds,
                self.scenario_clock(now),
                competition.participant_cash,
                competition.participant_grants,
                competition.round_ends_at if competition.round_open else 0,
                competition.next_round_starts_at,
            )
        )
        if state == SCENARIO_PAUSED:
            if not competition.paused_symbols:
                halting = [symbol for symbol, st in self.symbols.items() if not st.halted]
                for symbol in halting:
                    events.extend(self.halt(now, symbol))
                competition.paused_symbols = tuple(halting)
        else:
            for symbol in competition.paused_symbols:
                events.extend(self.resume(now, symbol))
            competition.paused_symbols = ()
        return events

    def scenario_clock(self, now: int) -> int:
        """Nanoseconds of log time the scenario has been RUNNING since it was LOADED."""
        competition = self.competition
        running = now - competition.running_since if competition.running_since else 0
        return competition.elapsed + running

    def start_round(
        self, round_number: int, ends_at: int, reset: bool, now: int, restart: bool = False
    ) -> list[Event]:
        """A new round (a round still open ends first). With `reset`, participants start again
        from their starting cash and positions (their orders cancelled). P&L between rounds is
        no round's and not the event's. Only an explicit `restart` (with `reset`) starts the
        round in progress again: a StartRound repeated is refused, never a second reset."""
        competition = self.competition
        if restart and not (reset and competition.round_open and round_number == competition.round):
            message = (
                f"restart applies to the round in progress with resetAccounts (round "
                f"{competition.round} is {'open' if competition.round_open else 'over'})"
            )
            return [_refused(Refusal.FAILED_PRECONDITION, message, now)]
        if round_number <= competition.round and not restart:
            message = (
                f"round {round_number} has started already (the round now is "
                f"{competition.round}); to start the round in progress again with every "
                "participant reset, send restart with resetAccounts"
            )
            return [_refused(Refusal.FAILED_PRECONDITION, message, now)]
        events: list[Event] = []
        if competition.round_open and not restart:
            events.extend(self.end_round(competition.round, now))
        marks = self.marks()
        if reset:
            for user_id in self.scores:
                events.extend(self._reset_account(self.accounts[user_id], now))
            marks = self.marks()
        first_round = not competition.round
        for user_id, score in self.scores.items():
            account = self.accounts[user_id]
            score.round_base = equity(account, marks) - account.starting_value
            if first_round:
                score.restart()
        competition.round = round_number
        competition.round_ends_at = ends_at
        competition.round_open = True
        competition.next_round_starts_at = 0
        events.append(
            RoundStarted(
                "",
                0,
                now,
                self._next_exchange_sequence(),
                round_number,
                competition.rounds,
                ends_at,
            )
        )
        return events

    def end_round(self, round_number: int, now: int, next_starts_at: int = 0) -> list[Event]:
        """The round's P&L is recorded, with a last sample of the scores."""
        competition = self.competition
        if not competition.round_open or round_number != competition.round:
            message = f"round {round_number} is not the round in progress"
            return [_refused(Refusal.FAILED_PRECONDITION, message, now)]
        marks = self.marks()
        for user_id, score in self.scores.items():
            account = self.accounts[user_id]
            round_pnl = equity(account, marks) - account.starting_value - score.round_base
            score.round_pnls.append(round_pnl)
            score.banked += round_pnl
        competition.round_open = False
        competition.next_round_starts_at = next_starts_at
        events = [self._scores_event(now, marks)]
        events.append(
            RoundEnded("", 0, now, self._next_exchange_sequence(), round_number, next_starts_at)
        )
        return events

    def _reset_account(self, account: Account, now: int) -> list[Event]:
        events = self._cancel_orders_of(account.user_id, "", Reason.CANCELLED_BY_ADMIN, now)
        account.cash = account.starting_cash
        account.reserved_cash = 0
        account.positions.clear()
        _grant_positions(account)
        events.append(AccountReset("", 0, now, account.user_id, account.cash))
        return events

    # ---- marks and scores -------------------------------------------------------------------

    def mark(self, state: SymbolState) -> int | None:
        bid, _, ask, _, _ = state.last_quote
        return mark_units(
            bid,
            ask,
            state.last,
            state.reference_price,
            state.tick_cash,
            self.settings.mark_max_spread_ticks,
        )

    def marks(self) -> dict[str, int | None]:
        return {symbol: self.mark(state) for symbol, state in self.symbols.items()}

    def sample_scores(self, now: int) -> list[Event]:
        """Once per minute of log time: every ranked participant's score."""
        minute = now // MINUTE_NS
        last = self.last_sample_minute
        if last is not None and minute <= last:
            return []
        self.last_sample_minute = minute
        if last is None or not self.scores:
            return []
        return [self._scores_event(now, self.marks(), minute - last)]

    def _scores_event(self, now: int, marks: dict[str, int | None], minutes: int = 0) -> Event:
        competition = self.competition
        scores = []
        for user_id, score in self.scores.items():
            account = self.accounts[user_id]
            account_pnl = equity(account, marks) - account.starting_value
            total = score.total(account_pnl, competition.round_open)
            if minutes:
                score.record(total, minutes)
            rounds = list(score.round_pnls)
            if competition.round_open:
                rounds.append(account_pnl - score.round_base)
            scores.append(
                ParticipantScore(
                    user_id,
                    equity(account, marks),
                    total,
                    account.realized_pnl,
                    score.max_drawdown,
                    score.sharpe,
                    tuple(rounds),
                    account.fees_paid,
                )
            )
        return ScoresSampled("", 0, now, self._next_exchange_sequence(), tuple(scores))

    def symbol_status(self, state: SymbolState) -> SymbolStatus:
        if not self.market_open:
            return SymbolStatus.CLOSED
        return SymbolStatus.HALTED if state.halted else SymbolStatus.OPEN

    def open_market(self, now: int) -> list[Event]:
        """Start a trading day: the day's statistics and clientOrderIds restart."""
        events: list[Event] = []
        if self.market_open:
            return events
        self.market_open = True
        self.client_orders.clear()  # those tried while closed were refused, not today's orders
        events.append(TradingDayOpened("", 0, now, self._next_exchange_sequence()))
        for state in self.symbols.values():
            state.open = state.high = state.low = state.volume = 0
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now, force=True)
        return events

    def close_market(self, now: int) -> list[Event]:
        """End the trading day: every resting GFD order expires (GTC orders stay), and the day's
        clientOrderIds are forgotten."""
        events: list[Event] = []
        if not self.market_open:
            return events
        self.market_open = False
        self.client_orders.clear()
        for state in self.symbols.values():
            for book_side in (state.book.bids, state.book.asks):
                for order in list(book_side.iter_orders()):
                    if order.time_in_force == GFD:
                        self._take_off_book(state, book_side, order, events, now)
                        self._finish(state, order, EXPIRED, Reason.DAY_CLOSE, now, events)
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now)
        events.append(TradingDayClosed("", 0, now, self._next_exchange_sequence()))
        return events

    def halt(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(True, symbol, now)

    def resume(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(False, symbol, now)

    def _set_halted(self, halted: bool, symbol: str, now: int) -> list[Event]:
        if symbol and symbol not in self.symbols:
            message = f"symbol {symbol} is not listed"
            return [_refused(Refusal.UNKNOWN_SYMBOL, message, now)]
        states = [self.symbols[symbol]] if symbol else list(self.symbols.values())
        events: list[Event] = []
        for state in states:
            if state.halted != halted:
                state.halted = halted
                self._emit_market_state(state, events, now)
        if events:
            kind = TradingHalted if halted else TradingResumed
            events.append(kind(symbol, 0, now, self._next_exchange_sequence()))
        return events

    def _emit_market_state(self, state: SymbolState, events: list[Event], now: int) -> None:
        """Market state goes to the exchange-events channel, not market data, so like order
        events it carries the symbol's sequence without increasing it."""
        events.append(
            _new(MarketStateChanged, (state.symbol, state.sequence, now, self.symbol_status(state)))
        )

    def _next_exchange_sequence(self) -> int:
        self.exchange_sequence += 1
        return self.exchange_sequence

    # ---- orders ---------------------------------------------------------------------------

    def place_order(
        self,
        order_id: str,
        user_id: str,
        symbol: str,
        side: Side,
        type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        now: int,
        client_order_id: str = "",
    ) -> list[Event]:
        """Accept or reject a new order, match it, and rest or expire what is left.

        A clientOrderId the user already sent today is refused, naming the first order.
        """
        if client_order_id and user_id:
            key = (user_id, client_order_id)
            first = self.client_orders.get(key)
            if first is not None:
                message = f"clientOrderId {client_order_id!r} was already used by order {first}"
                return [_refused(Refusal.DUPLICATE_CLIENT_ORDER_ID, message, now, user_id, first)]
            self.client_orders[key] = order_id
        if type == MARKET:
            price = 0
        terms = _new(
            OrderTerms,
            (
                order_id,
                user_id,
                symbol,
                side,
                type,
                time_in_force,
                price,
                quantity,
                client_order_id,
                now,
            ),
        )
        order = Order(terms)
        events: list[Event] = []
        state = self.symbols.get(symbol)
        if state is None:
            events.append(_new(OrderRejected, (symbol, 0, now, terms, Reason.UNKNOWN_SYMBOL)))
            return events

        reason = self._validate(order, state)
        if not reason and user_id:
            reason = risk.reserve(
                order,
                self.accounts.get(user_id),
                state.book.asks,
                state.tick_cash,
                self.settings,
                self.open_order_counts.get(user_id, 0),
            )
        if reason:
            events.append(_new(OrderRejected, (symbol, state.sequence, now, terms, reason)))
            return events

        self.open_orders[order_id] = order
        if user_id:
            self.open_order_counts[user_id] = self.open_order_counts.get(user_id, 0) + 1
            order.maker_fee = self.settings.maker_fee_centi_bps
        events.append(_new(OrderAccepted, (symbol, state.sequence, now, terms)))

        if time_in_force == FOK and not self._can_fill_whole(order, state):
            self._finish(state, order, EXPIRED, Reason.FILL_OR_KILL, now, events)
            return events

        self._match(order, state, events, now)

        if order.remaining:
            if type == LIMIT and time_in_force in RESTING_TIME_IN_FORCE:
                book_side = state.book.bids if side == BUY else state.book.asks
                level = book_side.add(order)
                state.sequence += 1
                events.append(
                    _new(
                        BookLevelChanged,
                        (
                            symbol,
                            state.sequence,
                            now,
                            side,
                            level.price,
                            level.quantity,
                            len(level.orders),
                        ),
                    )
                )
            else:
                if type == MARKET and not order.filled_quantity:
                    expiry_reason = Reason.NO_LIQUIDITY
                else:
                    expiry_reason = Reason.UNFILLED_REMAINDER
                self._finish(state, order, EXPIRED, expiry_reason, now, events)
        self._emit_quote_if_changed(state, events, now)
        return events

    def cancel_order(
        self, order_id: str, user_id: str, now: int, is_admin: bool = False
    ) -> list[Event]:
        """Cancel an open order; only its owner or an admin may."""
        order = self.open_orders.get(order_id)
        if order is None:
            return [CancelRejected("", 0, now, order_id, user_id, Reason.UNKNOWN_ORDER)]
        if order.user_id != user_id and not is_admin:
            return [CancelRejected(order.symbol, 0, now, order_id, user_id, Reason.NOT_ORDER_OWNER)]
        state = self.symbols[order.symbol]
        events: list[Event] = []
        book_side = state.book.bids if order.side == BUY else state.book.asks
        self._take_off_book(state, book_side, order, events, now)
        reason = (
            Reason.CANCELLED_BY_OWNER if order.user_id == user_id else Reason.CANCELLED_BY_ADMIN
        )
        self._finish(state, order, CANCELLED, reason, now, events)
        self._emit_quote_if_changed(state, events, now)
        return events

    def amend_order(
        self,
        order_id: str,
        user_id: str,
        price: int | None,
        quantity: int | None,
        now: int,
    ) -> list[Event]:
        """Change a resting order's price and/or total quantity (None: unchanged), keeping its id.

        A smaller quantity at the same price keeps the order's place in its level. A new price
        or a larger quantity is a cancel/replace: the order goes to the back of its (new) level,
        and a new price that crosses trades at once as an incoming limit order would (taker
        fee, self-trade prevention). Only the owner may amend, and only while the symbol trades.
        """
        order = self.open_orders.get(order_id)

        def rejected(reason: Reason, message: str) -> list[Event]:
            symbol = order.symbol if order is not None else ""
            return [AmendRejected(symbol, 0, now, order_id, user_id, reason, message)]

        if order is None:
            return rejected(Reason.UNKNOWN_ORDER, f"orderId {order_id} is not an open order")
        if order.user_id != user_id:
            message = f"orderId {order_id} is not an order of userId {user_id}"
            return rejected(Reason.NOT_ORDER_OWNER, message)
        if price is None and quantity is None:
            return rejected(Reason.INVALID_ORDER, "nothing to change: give price, quantity or both")
        state = self.symbols[order.symbol]
        new_price = order.price if price is None else price
        new_quantity = order.quantity if quantity is None else quantity
        if new_price <= 0:
            return rejected(Reason.INVALID_ORDER, f"price must be positive, got {new_price} ticks")
        if not 0 < new_quantity <= MAX_ORDER_QUANTITY or new_quantity % state.lot_size:
            message = (
                f"quantity must be a multiple of {state.symbol}'s lot size {state.lot_size}, "
                f"up to {MAX_ORDER_QUANTITY}, got {new_quantity}"
            )
            return rejected(Reason.INVALID_ORDER, message)
        if new_quantity <= order.filled_quantity:
            message = (
                f"quantity {new_quantity} must be above the {order.filled_quantity} already "
                "filled (cancel the order to stop it)"
            )
            return rejected(Reason.INVALID_ORDER, message)
        if new_price == order.price and new_quantity == order.quantity:
            message = (
                f"nothing to change: the order is already {new_quantity} at "
                f"{_price_text(state, new_price)}"
            )
            return rejected(Reason.INVALID_ORDER, message)
        if not self.market_open:
            return rejected(Reason.MARKET_CLOSED, "the market is closed")
        if state.halted:
            return rejected(Reason.SYMBOL_HALTED, f"trading is halted in {state.symbol}")
        requeued = new_price != order.price or new_quantity > order.quantity
        remaining = new_quantity - order.filled_quantity
        if user_id:
            account = self.accounts.get(user_id)
            if account is None:
                return rejected(Reason.UNKNOWN_USER, f"userId {user_id} has no account")
            reason, message = risk.amend(
                order, account, new_price, remaining, state.tick_cash, self.settings, requeued
            )
            if reason:
                return rejected(reason, message)
        old_price, old_quantity = order.price, order.quantity
        terms = order.terms._replace(price=new_price, quantity=new_quantity)
        events: list[Event] = [
            OrderAmended(
                state.symbol,
                state.sequence,
                now,
                terms,
                old_price,
                old_quantity,
                not requeued,
                order.filled_quantity,
                order.filled_notional,
                order.status,
            )
        ]
        book_side = state.book.bids if order.side == BUY else state.book.asks
        if not requeued:
            level = book_side.levels[old_price]
            level.reduce(order, order.remaining - remaining)
        elif new_price == old_price:
            book_side.levels[old_price].remove(order)
        else:
            self._take_off_book(state, book_side, order, events, now)
        order.terms = terms
        order.price, order.quantity, order.remaining = new_price, new_quantity, remaining
        order.updated_at = now
        if requeued:
            # Last in arrival order, as a new order: snapshots restore levels in that order.
            del self.open_orders[order_id]
            self.open_orders[order_id] = order
            if user_id:
                order.maker_fee = self.settings.maker_fee_centi_bps
        if new_price != old_price:
            self._match(order, state, events, now)
        if order.remaining:
            level = book_side.levels[new_price] if not requeued else book_side.add(order)
            state.sequence += 1
            events.append(
                BookLevelChanged(
                    state.symbol,
                    state.sequence,
                    now,
                    order.side,
                    level.price,
                    level.quantity,
                    len(level.orders),
                )
            )
        self._emit_quote_if_changed(state, events, now)
        return events

    def convert(
        self,
        conversion_id: str,
        user_id: str,
        symbol: str,
        direction: Direction,
        quantity: int,
        now: int,
    ) -> list[Event]:
        """Create ETF units from the user's components, or redeem them into the components,
        at the ETF's basket: all or nothing, for its flat fee. The shares keep their cost
        basis; nothing trades, so no market data changes."""
        state = self.symbols.get(symbol)

        def rejected(reason: Reason, message: str) -> list[Event]:
            sequence = state.sequence if state is not None else 0
            terms = (conversion_id, user_id, direction, quantity, reason, message)
            return [ConversionRejected(symbol, sequence, now, *terms)]

        if state is None:
            return rejected(Reason.UNKNOWN_SYMBOL, f"symbol {symbol} is not listed")
        if not state.basket:
            message = f"{symbol} has no basket: only an ETF listed with one converts"
            return rejected(Reason.NOT_CONVERTIBLE, message)
        if direction not in VALID_DIRECTIONS:
            return rejected(Reason.INVALID_ORDER, "direction must be CREATE or REDEEM")
        if not 0 < quantity <= MAX_ORDER_QUANTITY or quantity % state.lot_size:
            message = (
                f"quantity must be a multiple of {symbol}'s lot size {state.lot_size}, from "
                f"{state.lot_size} to {MAX_ORDER_QUANTITY}, got {quantity}"
            )
            return rejected(Reason.INVALID_ORDER, message)
        if not self.market_open:
            return rejected(Reason.MARKET_CLOSED, "the market is closed")
        halted = [
            name for name in (symbol, *(c for c, _ in state.basket)) if self.symbols[name].halted
        ]
        if halted:
            return rejected(Reason.SYMBOL_HALTED, f"trading is halted in {', '.join(halted)}")
        parts = tuple((component, shares * quantity) for component, shares in state.basket)
        units = ((symbol, quantity),)
        given, received = (parts, units) if direction == Direction.CREATE else (units, parts)
        account = self.accounts.get(user_id)
        fee_units = state.conversion_fee
        reason, message = risk.check_conversion(
            account, user_id, given, received, fee_units, self.settings
        )
        if reason or account is None:
            return rejected(reason, message)
        weights = self._basket_weights(state) if direction == Direction.REDEEM else ()
        legs, realized = convert(
            account, direction, symbol, quantity, state.basket, weights, fee_units
        )
        self.fees_collected += fee_units
        return [
            ConversionExecuted(
                symbol,
                state.sequence,
                now,
                conversion_id,
                user_id,
                Direction(direction),
                quantity,
                legs,
                fee_units,
                realized,
                account.cash,
            )
        ]

    def _basket_weights(self, state: SymbolState) -> tuple[int, ...]:
        """What each component of a unit is worth at its mark, which shares out the cost of
        redeemed units; by share count when a component has no mark."""
        weights = []
        for component, shares in state.basket:
            mark = self.mark(self.symbols[component])
            if mark is None:
                return tuple(shares for _, shares in state.basket)
            weights.append(shares * mark)
        return tuple(weights)

    def _validate(self, order: Order, state: SymbolState) -> Reason:
        if (
            order.side not in VALID_SIDES
            or order.type not in VALID_TYPES
            or order.time_in_force not in VALID_TIME_IN_FORCE
        ):
            return Reason.INVALID_ORDER
        quantity = order.quantity
        if quantity <= 0 or quantity > MAX_ORDER_QUANTITY or quantity % state.lot_size:
            return Reason.INVALID_ORDER
        if order.type == LIMIT:
            if order.price <= 0:
                return Reason.INVALID_ORDER
        elif order.time_in_force in RESTING_TIME_IN_FORCE:
            return Reason.INVALID_ORDER
        if not self.market_open:
            return Reason.MARKET_CLOSED
        if state.halted:
            return Reason.SYMBOL_HALTED
        return Reason.NONE

    def _can_fill_whole(self, order: Order, state: SymbolState) -> bool:
        """FOK test: is there enough liquidity within the limit, not counting own orders?"""
        wanted = order.quantity
        is_buy = order.side == BUY
        limit = order.price if order.type == LIMIT else 0
        user_id = order.user_id
        for level in state.book.opposite(order.side).iter_levels():
            if limit and (level.price > limit if is_buy else level.price < limit):
                return False
            if user_id:
                for resting in level.orders.values():
                    if resting.user_id != user_id:
                        wanted -= resting.remaining
                        if wanted <= 0:
                            return True
            else:
                wanted -= level.quantity
                if wanted <= 0:
                    return True
        return False

    def _match(self, order: Order, state: SymbolState, events: list[Event], now: int) -> None:
        """Trade `order` against the opposite side, best price first, oldest first.

        The engine's one hot loop, kept flat: fills come off the front of a level inline.
        """
        is_buy = order.side == BUY
        book_side = state.book.asks if is_buy else state.book.bids
        levels = book_side.levels
        sign = book_side.sign
        limit = order.price
        has_limit = order.type == LIMIT
        user_id = order.user_id
        symbol = state.symbol
        open_orders = self.open_orders
        accounts = self.accounts
        append = events.append
        resting_side = SELL if is_buy else BUY
        terms = order.terms
        settings = self.settings
        while order.remaining and book_side.best_key is not None:
            price = book_side.best_key * sign
            if has_limit and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            resting_orders = level.orders
            while order.remaining and resting_orders:
                resting = next(iter(resting_orders.values()))
                if user_id and resting.user_id == user_id:
                    self._take_off_book(state, book_side, resting, events, now)
                    self._finish(state, resting, CANCELLED, Reason.SELF_TRADE, now, events)
                    continue
                quantity = (
                    order.remaining if order.remaining < resting.remaining else resting.remaining
                )
                state.trade_count += 1
                trade_id = f"{symbol}-{state.trade_count}"
                if user_id or resting.user_id:
                    order_fee, resting_fee = settle(
                        accounts, settings, symbol, state.tick_cash, order, resting, price, quantity
                    )
                    self.fees_collected += order_fee + resting_fee
                else:
                    order_fee = resting_fee = 0

                resting.remaining -= quantity
                resting.filled_quantity += quantity
                resting.filled_notional += price * quantity
                resting.updated_at = now
                level.quantity -= quantity
                if resting.remaining:
                    resting.status = PARTIALLY_FILLED
                else:
                    resting.status = FILLED
                    del resting_orders[resting.order_id]
                    if not resting_orders:
                        book_side.remove_level(level)
                    del open_orders[resting.order_id]
                    if resting.user_id:
                        self._release(resting)

                order.remaining -= quantity
                order.filled_quantity += quantity
                order.filled_notional += price * quantity
                order.status = PARTIALLY_FILLED if order.remaining else FILLED

                if is_buy:
                    buy, sell = order, resting
                else:
                    buy, sell = resting, order
                sequence = state.sequence + 1
                append(
                    _new(
                        TradeExecuted,
                        (
                            symbol,
                            sequence,
                            now,
                            trade_id,
                            price,
                            quantity,
                            order.side,
                            buy.order_id,
                            sell.order_id,
                            buy.user_id,
                            sell.user_id,
                        ),
                    )
                )
                append(
                    _new(
                        OrderFilled,
                        (
                            symbol,
                            sequence,
                            now,
                            resting.terms,
                            trade_id,
                            price,
                            quantity,
                            resting.filled_quantity,
                            resting.filled_notional,
                            resting.status,
                            resting_fee,
                        ),
                    )
                )
                append(
                    _new(
                        OrderFilled,
                        (
                            symbol,
                            sequence,
                            now,
                            terms,
                            trade_id,
                            price,
                            quantity,
                            order.filled_quantity,
                            order.filled_notional,
                            order.status,
                            order_fee,
                        ),
                    )
                )
                append(
                    _new(
                        BookLevelChanged,
                        (
                            symbol,
                            sequence + 1,
                            now,
                            resting_side,
                            price,
                            level.quantity,
                            len(resting_orders),
                        ),
                    )
                )
                state.sequence = sequence + 1
                self._record_trade(state, price, quantity)
        if order.filled_quantity:
            order.updated_at = now
        if not order.remaining:
            del open_orders[order.order_id]
            if user_id:
                self._release(order)

    def _record_trade(self, state: SymbolState, price: int, quantity: int) -> None:
        state.last = price
        state.last_quantity = quantity
        state.volume += quantity
        if not state.open:
            state.open = state.high = state.low = price
        elif price > state.high:
            state.high = price
        elif price < state.low:
            state.low = price

    def _take_off_book(
        self,
        state: SymbolState,
        book_side: BookSide,
        order: Order,
        events: list[Event],
        now: int,
    ) -> None:
        """Take a resting order off the book (not a fill) and publish its level's new state."""
        level = book_side.remove(order)
        state.sequence += 1
        events.append(
            _new(
                BookLevelChanged,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    book_side.side,
                    level.price,
                    level.quantity,
                    len(level.orders),
                ),
            )
        )

    def _finish(
        self,
        state: SymbolState,
        order: Order,
        status: OrderStatus,
        reason: Reason,
        now: int,
        events: list[Event],
    ) -> None:
        """Close an accepted order that did not fill completely, give back what it holds, and
        emit its OrderCancelled or OrderExpired."""
        order.status = status
        order.reason = reason
        order.updated_at = now
        del self.open_orders[order.order_id]
        if order.user_id:
            self._release(order)
        kind = OrderCancelled if status == CANCELLED else OrderExpired
        events.append(
            _new(
                kind,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    order.terms,
                    reason,
                    order.filled_quantity,
                    order.filled_notional,
                ),
            )
        )

    def _release(self, order: Order) -> None:
        """The order no longer counts as open for its user, nor holds cash or position."""
        self.open_order_counts[order.user_id] -= 1
        risk.release(order, self.accounts.get(order.user_id))

    def refresh_last_quote(self, state: SymbolState) -> tuple[int, int, int, int, int]:
        """Recompute the symbol's top of book; returns (bid, bid_size, ask, ask_size, trades)."""
        bids = state.book.bids
        asks = state.book.asks
        if bids.best_key is None:
            bid = bid_size = 0
        else:
            bid = -bids.best_key
            bid_size = bids.levels[bid].quantity
        if asks.best_key is None:
            ask = ask_size = 0
        else:
            ask = asks.best_key
            ask_size = asks.levels[ask].quantity
        state.last_quote = (bid, bid_size, ask, ask_size, state.trade_count)
        return state.last_quote

    def _emit_quote_if_changed(
        self, state: SymbolState, events: list[Event], now: int, force: bool = False
    ) -> None:
        previous = state.last_quote
        bid, bid_size, ask, ask_size, _ = quote = self.refresh_last_quote(state)
        if quote == previous and not force:
            return
        state.sequence += 1
        events.append(
            _new(
                QuoteChanged,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    bid,
                    bid_size,
                    ask,
                    ask_size,
                    state.last,
                    state.last_quantity,
                    state.volume,
                    state.open,
                    state.high,
                    state.low,
                    self.mark(state) or 0,
                ),
            )
        )
