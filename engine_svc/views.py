"""The read-side caches the engine keeps current in Redis: orders, conversions, books, quotes,
accounts, keys.

Fed with each batch's EngineEvents (never its command); `write` puts what changed since the last
write into a Redis pipeline, `write_everything` rewrites every cache (after a restart, or when
Redis came back empty). Redis is a cache here: everything in it can be rebuilt from the log.
What the views keep besides the engine's state (the fills of open orders, each symbol's time of
last change) goes into snapshots with it, so a restore loses none of it.
"""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from engine_svc.codec import live_order_state, settings_to_proto
from engine_svc.engine import MatchingEngine, SymbolState
from exchange.internal.v1 import engine_pb2
from exchange.v1 import accounts_pb2, competition_pb2, types_pb2
from mockex import names, participant

FillRecord = tuple[str, int, int, int, int]
"""(trade id, price ticks, quantity, timestamp ns, fee units) of one execution of an open order."""

MARKET_DATA_KINDS = frozenset(
    ("book_level_changed", "trade_executed", "quote_changed", "symbol_added")
)
DEFAULT_TICK_SIZE = 0.01
"""For an order of a symbol that was never listed (rejected as UNKNOWN_SYMBOL)."""


class EngineViews:
    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.open_order_fills: dict[str, list[FillRecord]] = {}
        """Fills so far of each open order, so its cached object lists all of them."""
        self.symbol_times: dict[str, int] = {}
        """Time of each symbol's last market-data event: its book's and quote's timestamp."""
        self._orders: dict[str, engine_pb2.OrderState] = {}
        self._conversions: list[types_pb2.Conversion] = []
        self._symbols: set[str] = set()
        self._symbol_infos: set[str] = set()
        self._accounts: set[str] = set()
        self._users: list[engine_pb2.UserRecord] = []
        self._revoked_keys: list[str] = []
        self._schedule = False
        self._settings = False

    def record(self, batch: engine_pb2.EngineBatch) -> None:
        """Note what one batch's events changed."""
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in participant.ORDER_EVENT_KINDS:
                state = getattr(event, kind).order
                self._orders[state.order_id] = state
                if state.user_id:
                    self._accounts.add(state.user_id)
                if kind == "order_filled":
                    filled = event.order_filled
                    self.open_order_fills.setdefault(state.order_id, []).append(
                        (
                            filled.trade_id,
                            filled.price_ticks,
                            filled.quantity,
                            event.timestamp_ns,
                            filled.fee_units,
                        )
                    )
            elif kind in participant.CONVERSION_EVENT_KINDS:
                conversion = participant.conversion(event)
                self._conversions.append(conversion)
                if kind == "conversion_executed":
                    self._accounts.add(conversion.user_id)
            elif kind in MARKET_DATA_KINDS:
                self._symbols.add(event.symbol)
                self.symbol_times[event.symbol] = event.timestamp_ns
                if kind == "symbol_added":
                    self._symbol_infos.add(event.symbol)
            elif kind == "market_state_changed":
                self._symbol_infos.add(event.symbol)
            elif kind == "account_created":
                created = event.account_created
                self._accounts.add(created.user_id)
                if created.api_key_sha256:
                    self._users.append(user_record(created.user_id, created))
            elif kind in ("cash_adjusted", "account_reset", "user_disabled", "user_enabled"):
                self._accounts.add(getattr(event, kind).user_id)
            elif kind == "api_key_changed":
                changed = event.api_key_changed
                if changed.previous_sha256:
                    self._revoked_keys.append(changed.previous_sha256)
                if changed.api_key_sha256:
                    self._users.append(user_record(changed.user_id, changed))
            elif kind in ("scores_sampled", "round_started", "round_ended"):
                self._accounts.update(self.engine.scores)
                self._schedule = True
            elif kind in ("scenario_changed", "trading_day_opened", "trading_day_closed"):
                self._schedule = True
            elif kind == "settings_changed":
                # The mark rule may have changed: every quote's mark with it.
                self._settings = True
                self._symbols.update(self.engine.symbols)

    def write(self, pipeline: Pipeline) -> None:
        """Queue what changed on `pipeline`; call `written` once the pipeline went through (on
        failure the changes stay noted for the next write)."""
        engine = self.engine
        for order_id, state in self._orders.items():
            self._write_order(pipeline, state, self.open_order_fills.get(order_id, ()))
        for conversion in self._conversions:
            pipeline.set(
                names.conversion_key(conversion.conversion_id),
                conversion.SerializeToString(),
                ex=names.ORDER_TTL_SECONDS,
            )
        for symbol in self._symbols:
            state = engine.symbols.get(symbol)
            if state is not None:
                self._write_market(pipeline, state)
        infos = {
            symbol: symbol_view(engine, engine.symbols[symbol]).SerializeToString()
            for symbol in self._symbol_infos
            if symbol in engine.symbols
        }
        if infos:
            pipeline.hset(names.SYMBOLS_KEY, mapping=infos)
        accounts = {
            user_id: cached_account(engine, user_id).SerializeToString()
            for user_id in self._accounts
            if user_id in engine.accounts
        }
        if accounts:
            pipeline.hset(names.ACCOUNTS_KEY, mapping=accounts)
        if self._revoked_keys:
            pipeline.hdel(names.USERS_KEY, *self._revoked_keys)
        if self._users:
            users = {record.api_key_sha256: record.SerializeToString() for record in self._users}
            pipeline.hset(names.USERS_KEY, mapping=users)
        if self._schedule:
            pipeline.set(names.SCHEDULE_KEY, schedule_view(engine).SerializeToString())
        if self._settings:
            pipeline.set(names.SETTINGS_KEY, settings_to_proto(engine.settings).SerializeToString())

    def write_everything(self, pipeline: Pipeline) -> None:
        """Every cache the engine's state can rebuild (symbols, books, quotes, accounts, API keys,
        open orders) plus the orders changed since the last write (finished ones included: the
        store answers for older finished orders)."""
        engine = self.engine
        self.write(pipeline)
        for order in engine.open_orders.values():
            self._write_order(
                pipeline, live_order_state(order), self.open_order_fills.get(order.order_id, ())
            )
        for state in engine.symbols.values():
            self._write_market(pipeline, state)
        if engine.symbols:
            pipeline.hset(
                names.SYMBOLS_KEY,
                mapping={
                    symbol: symbol_view(engine, state).SerializeToString()
                    for symbol, state in engine.symbols.items()
                },
            )
        if engine.accounts:
            pipeline.hset(
                names.ACCOUNTS_KEY,
                mapping={
                    user_id: cached_account(engine, user_id).SerializeToString()
                    for user_id in engine.accounts
                },
            )
        users = {
            account.api_key_sha256: user_record(account.user_id, account).SerializeToString()
            for account in engine.accounts.values()
            if account.api_key_sha256
        }
        if users:
            pipeline.hset(names.USERS_KEY, mapping=users)
        pipeline.set(names.SCHEDULE_KEY, schedule_view(engine).SerializeToString())
        pipeline.set(names.SETTINGS_KEY, settings_to_proto(engine.settings).SerializeToString())

    def written(self) -> None:
        """The last write went through: forget the changes, and the fills of finished orders."""
        for order_id, state in self._orders.items():
            if state.status in participant.FINISHED:
                self.open_order_fills.pop(order_id, None)
        self._orders.clear()
        self._conversions.clear()
        self._symbols.clear()
        self._symbol_infos.clear()
        self._accounts.clear()
        self._users.clear()
        self._revoked_keys.clear()
        self._schedule = False
        self._settings = False

    def _write_order(
        self, pipeline: Pipeline, state: engine_pb2.OrderState, fills: list[FillRecord] | tuple
    ) -> None:
        symbol = self.engine.symbols.get(state.symbol)
        tick_size = symbol.tick_size_value if symbol else DEFAULT_TICK_SIZE
        public = participant.order(
            state,
            tick_size,
            [
                participant.fill(trade_id, price, quantity, when, tick_size, fee_units)
                for trade_id, price, quantity, when, fee_units in fills
            ],
        )
        pipeline.set(
            names.order_key(state.order_id),
            public.SerializeToString(),
            ex=names.FINISHED_ORDER_TTL_SECONDS
            if public.status in participant.FINISHED
            else names.ORDER_TTL_SECONDS,
        )

    def _write_market(self, pipeline: Pipeline, state: SymbolState) -> None:
        updated_ns = self.symbol_times.get(state.symbol, 0)
        pipeline.set(names.book_key(state.symbol), book_view(state, updated_ns).SerializeToString())
        pipeline.set(
            names.quote_key(state.symbol),
            quote_view(self.engine, state, updated_ns).SerializeToString(),
        )

    # ---- snapshots --------------------------------------------------------------------------

    def add_to_snapshot(self, snapshot: engine_pb2.EngineSnapshot) -> None:
        for resting in snapshot.open_orders:
            for (
                trade_id,
                price_ticks,
                quantity,
                timestamp_ns,
                fee_units,
            ) in self.open_order_fills.get(resting.order.order_id, ()):
                resting.fills.add(
                    trade_id=trade_id,
                    price_ticks=price_ticks,
                    quantity=quantity,
                    timestamp_ns=timestamp_ns,
                    fee_units=fee_units,
                )
        for symbol in snapshot.symbols:
            symbol.updated_ns = self.symbol_times.get(symbol.symbol, 0)

    def restore_from_snapshot(self, snapshot: engine_pb2.EngineSnapshot) -> None:
        for resting in snapshot.open_orders:
            if resting.fills:
                self.open_order_fills[resting.order.order_id] = [
                    (
                        fill.trade_id,
                        fill.price_ticks,
                        fill.quantity,
                        fill.timestamp_ns,
                        fill.fee_units,
                    )
                    for fill in resting.fills
                ]
        for symbol in snapshot.symbols:
            if symbol.updated_ns:
                self.symbol_times[symbol.symbol] = symbol.updated_ns


def user_record(user_id: str, account) -> engine_pb2.UserRecord:
    """The API-key record of an AccountCreated event or an Account."""
    return engine_pb2.UserRecord(
        user_id=user_id, admin=account.admin, api_key_sha256=account.api_key_sha256
    )


SCHEDULE_STATES = {
    engine_pb2.SCENARIO_STATE_NONE_UNSPECIFIED: competition_pb2.NOT_STARTED,
    engine_pb2.SCENARIO_STATE_LOADED: competition_pb2.LOADED,
    engine_pb2.SCENARIO_STATE_RUNNING: competition_pb2.RUNNING,
    engine_pb2.SCENARIO_STATE_PAUSED: competition_pb2.PAUSED,
    engine_pb2.SCENARIO_STATE_STOPPED: competition_pb2.FINISHED,
}


def schedule_view(engine: MatchingEngine) -> engine_pb2.CachedSchedule:
    competition = engine.competition
    view = competition_pb2.GetScheduleResponse(
        state=SCHEDULE_STATES.get(competition.scenario_state, competition_pb2.NOT_STARTED),
        round=competition.round,
        rounds=competition.rounds,
        market_open=engine.market_open,
        scenario=competition.scenario_name,
    )
    if competition.round_open and competition.round_ends_at:
        view.round_ends_at.CopyFrom(participant.timestamp(competition.round_ends_at))
    if not competition.round_open and competition.next_round_starts_at:
        view.next_round_starts_at.CopyFrom(participant.timestamp(competition.next_round_starts_at))
    return engine_pb2.CachedSchedule(
        schedule=view,
        elapsed_ns=competition.elapsed,
        running_since_ns=competition.running_since,
    )


def book_view(state: SymbolState, updated_ns: int, depth: int = 0) -> types_pb2.OrderBook:
    return participant.book(
        state.symbol,
        state.book.bids.depth(depth),
        state.book.asks.depth(depth),
        state.sequence,
        updated_ns,
        state.tick_size_value,
    )


def quote_view(engine: MatchingEngine, state: SymbolState, updated_ns: int) -> types_pb2.Quote:
    bid, bid_size, ask, ask_size, _ = state.last_quote
    ticks = engine_pb2.QuoteChanged(
        bid_ticks=bid,
        bid_size=bid_size,
        ask_ticks=ask,
        ask_size=ask_size,
        last_ticks=state.last,
        last_quantity=state.last_quantity,
        volume=state.volume,
        open_ticks=state.open,
        high_ticks=state.high,
        low_ticks=state.low,
        mark_units=engine.mark(state) or 0,
    )
    return participant.quote(state.symbol, ticks, state.sequence, updated_ns, state.tick_size_value)


def symbol_view(engine: MatchingEngine, state: SymbolState) -> types_pb2.SymbolInfo:
    return participant.symbol_info(
        state.symbol,
        state.tick_size,
        state.lot_size,
        engine.symbol_status(state),
        state.reference_price,
        state.basket,
        state.conversion_fee,
    )


def account_view(engine: MatchingEngine, user_id: str) -> accounts_pb2.GetAccountResponse:
    account = engine.accounts[user_id]
    return participant.account(
        user_id,
        account.cash,
        account.reserved_cash,
        (
            (symbol, position.quantity, position.cost)
            for symbol, position in account.positions.items()
            if position.quantity or position.realized_pnl
        ),
        account.realized_pnl,
        account.starting_value,
        account.fees_paid,
    )


def cached_account(engine: MatchingEngine, user_id: str) -> engine_pb2.CachedAccount:
    account = engine.accounts[user_id]
    cached = engine_pb2.CachedAccount(
        account=account_view(engine, user_id),
        ranked=account.ranked,
        role=account.role,
        disabled=account.disabled,
        round_open=engine.competition.round_open,
    )
    score = engine.scores.get(user_id)
    if score is not None:
        cached.banked_units = score.banked
        cached.round_base_units = score.round_base
        cached.finished_round_pnl_units.extend(score.round_pnls)
        cached.max_drawdown_units = score.max_drawdown
        cached.sharpe = score.sharpe
    return cached
