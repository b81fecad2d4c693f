"""Domain objects to and from the proto messages that cross Redis and Kafka.

Events become EngineEvent; the whole engine becomes an EngineSnapshot and back. This is the only
place that knows both the domain classes and the wire format.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine_svc import events as ev
from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, Account, Position
from engine_svc.engine import MatchingEngine, SymbolState
from engine_svc.orders import (
    Order,
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from engine_svc.scoring import Score
from exchange.internal.v1 import engine_pb2

SNAPSHOT_FORMAT = 2
"""1: integer P&L, settings, clientOrderIds and sessions. 2: roles, fees, grants kept for round
resets, the competition and the scores, ETF baskets. Older formats are converted."""


def order_state(
    terms: OrderTerms,
    status: int,
    reason: int,
    filled_quantity: int,
    filled_notional: int,
    updated_ns: int,
) -> engine_pb2.OrderState:
    return engine_pb2.OrderState(
        order_id=terms.order_id,
        user_id=terms.user_id,
        symbol=terms.symbol,
        side=terms.side,
        type=terms.type,
        time_in_force=terms.time_in_force,
        price_ticks=terms.price,
        quantity=terms.quantity,
        filled_quantity=filled_quantity,
        filled_notional_ticks=filled_notional,
        status=status,
        reason=reason,
        client_order_id=terms.client_order_id,
        created_ns=terms.created_at,
        updated_ns=updated_ns,
    )


def live_order_state(order: Order) -> engine_pb2.OrderState:
    """The state of an open order now (for snapshots)."""
    return order_state(
        order.terms,
        order.status,
        order.reason,
        order.filled_quantity,
        order.filled_notional,
        order.updated_at,
    )


SETTINGS_FIELDS = ExchangeSettings.__slots__
"""The domain settings and the proto message have the same field names."""


def settings_to_proto(settings: ExchangeSettings) -> engine_pb2.ExchangeSettings:
    return engine_pb2.ExchangeSettings(
        **{name: getattr(settings, name) for name in SETTINGS_FIELDS}
    )


def settings_from_proto(message: engine_pb2.ExchangeSettings) -> ExchangeSettings:
    return ExchangeSettings(**{name: getattr(message, name) for name in SETTINGS_FIELDS})


def shock_from_proto(shock: engine_pb2.NewsShock) -> ev.NewsShock:
    return ev.NewsShock(shock.price_change, shock.volatility_multiplier, shock.duration_seconds)


def grants_from_proto(grants: Iterable[engine_pb2.PositionGrant]) -> tuple[ev.Grant, ...]:
    return tuple(ev.Grant(grant.symbol, grant.quantity, grant.price_ticks) for grant in grants)


def grants_to_proto(grants: Iterable[ev.Grant]) -> list[engine_pb2.PositionGrant]:
    return [
        engine_pb2.PositionGrant(
            symbol=grant.symbol, quantity=grant.quantity, price_ticks=grant.price
        )
        for grant in grants
    ]


def event_to_proto(event: ev.Event) -> engine_pb2.EngineEvent:
    message = engine_pb2.EngineEvent(
        symbol=event.symbol, sequence=event.sequence, timestamp_ns=event.timestamp
    )
    _FILLERS[type(event)](event, message)
    return message


def _accepted(event: ev.OrderAccepted, message: engine_pb2.EngineEvent) -> None:
    message.order_accepted.order.CopyFrom(
        order_state(event.order, OrderStatus.NEW, Reason.NONE, 0, 0, event.timestamp)
    )


def _rejected(event: ev.OrderRejected, message: engine_pb2.EngineEvent) -> None:
    message.order_rejected.order.CopyFrom(
        order_state(event.order, OrderStatus.REJECTED, event.reason, 0, 0, event.timestamp)
    )


def _filled(event: ev.OrderFilled, message: engine_pb2.EngineEvent) -> None:
    filled = message.order_filled
    filled.order.CopyFrom(
        order_state(
            event.order,
            event.status,
            Reason.NONE,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )
    filled.trade_id = event.trade_id
    filled.price_ticks = event.price
    filled.quantity = event.quantity
    filled.fee_units = event.fee


def _cancelled(event: ev.OrderCancelled, message: engine_pb2.EngineEvent) -> None:
    message.order_cancelled.order.CopyFrom(
        order_state(
            event.order,
            OrderStatus.CANCELLED,
            event.reason,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )


def _expired(event: ev.OrderExpired, message: engine_pb2.EngineEvent) -> None:
    message.order_expired.order.CopyFrom(
        order_state(
            event.order,
            OrderStatus.EXPIRED,
            event.reason,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )


def _cancel_rejected(event: ev.CancelRejected, message: engine_pb2.EngineEvent) -> None:
    rejected = message.cancel_rejected
    rejected.order_id = event.order_id
    rejected.user_id = event.user_id
    rejected.reason = event.reason


def _amended(event: ev.OrderAmended, message: engine_pb2.EngineEvent) -> None:
    amended = message.order_amended
    amended.order.CopyFrom(
        order_state(
            event.order,
            event.status,
            Reason.NONE,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )
    amended.old_price_ticks = event.old_price
    amended.old_quantity = event.old_quantity
    amended.priority_kept = event.priority_kept


def _amend_rejected(event: ev.AmendRejected, message: engine_pb2.EngineEvent) -> None:
    rejected = message.amend_rejected
    rejected.order_id = event.order_id
    rejected.user_id = event.user_id
    rejected.reason = event.reason
    rejected.message = event.message


def _trade(event: ev.TradeExecuted, message: engine_pb2.EngineEvent) -> None:
    trade = message.trade_executed
    trade.trade_id = event.trade_id
    trade.price_ticks = event.price
    trade.quantity = event.quantity
    trade.aggressor_side = event.aggressor_side
    trade.buy_order_id = event.buy_order_id
    trade.sell_order_id = event.sell_order_id
    trade.buyer_id = event.buyer_id
    trade.seller_id = event.seller_id


def _book_level(event: ev.BookLevelChanged, message: engine_pb2.EngineEvent) -> None:
    level = message.book_level_changed
    level.side = event.side
    level.price_ticks = event.price
    level.quantity = event.quantity
    level.order_count = event.order_count


def _quote(event: ev.QuoteChanged, message: engine_pb2.EngineEvent) -> None:
    quote = message.quote_changed
    quote.bid_ticks = event.bid
    quote.bid_size = event.bid_size
    quote.ask_ticks = event.ask
    quote.ask_size = event.ask_size
    quote.last_ticks = event.last
    quote.last_quantity = event.last_quantity
    quote.volume = event.volume
    quote.open_ticks = event.open
    quote.high_ticks = event.high
    quote.low_ticks = event.low
    quote.mark_units = event.mark


def _market_state(event: ev.MarketStateChanged, message: engine_pb2.EngineEvent) -> None:
    message.market_state_changed.status = event.status


def _symbol_added(event: ev.SymbolAdded, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    added = message.symbol_added
    added.tick_size = event.tick_size
    added.lot_size = event.lot_size
    added.reference_price_ticks = event.reference_price
    for component, shares in event.basket:
        added.basket.add(symbol=component, shares=shares)
    added.conversion_fee_units = event.conversion_fee


def _day_opened(event: ev.TradingDayOpened, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_day_opened.SetInParent()


def _day_closed(event: ev.TradingDayClosed, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_day_closed.SetInParent()


def _halted(event: ev.TradingHalted, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_halted.symbol = event.symbol


def _resumed(event: ev.TradingResumed, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_resumed.symbol = event.symbol


def _account_created(event: ev.AccountCreated, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    created = message.account_created
    created.user_id = event.user_id
    created.admin = event.admin
    created.api_key_sha256 = event.api_key_sha256
    created.cash_units = event.cash
    for grant in event.grants:
        created.grants.add(symbol=grant.symbol, quantity=grant.quantity, price_ticks=grant.price)
    created.starting_value_units = event.starting_value
    created.role = event.role


def _settings_changed(event: ev.SettingsChanged, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    changed = message.settings_changed
    changed.settings.CopyFrom(settings_to_proto(event.settings))
    changed.previous.CopyFrom(settings_to_proto(event.previous))


def _cash_adjusted(event: ev.CashAdjusted, message: engine_pb2.EngineEvent) -> None:
    adjusted = message.cash_adjusted
    adjusted.user_id = event.user_id
    adjusted.amount_units = event.amount
    adjusted.cash_units = event.cash
    adjusted.starting_value_units = event.starting_value


def _command_refused(event: ev.CommandRefused, message: engine_pb2.EngineEvent) -> None:
    refused = message.command_refused
    refused.reason = event.reason
    refused.message = event.message
    refused.user_id = event.user_id
    refused.order_id = event.order_id


def _user_disabled(event: ev.UserDisabled, message: engine_pb2.EngineEvent) -> None:
    message.user_disabled.user_id = event.user_id


def _user_enabled(event: ev.UserEnabled, message: engine_pb2.EngineEvent) -> None:
    message.user_enabled.user_id = event.user_id


def _api_key_changed(event: ev.ApiKeyChanged, message: engine_pb2.EngineEvent) -> None:
    changed = message.api_key_changed
    changed.user_id = event.user_id
    changed.previous_sha256 = event.previous_sha256
    changed.api_key_sha256 = event.api_key_sha256
    changed.admin = event.admin


def _news_published(event: ev.NewsPublished, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    news = message.news_published
    news.news_id = event.news_id
    news.headline = event.headline
    news.symbols.extend(event.symbols)
    news.shock.price_change = event.shock.price_change
    news.shock.volatility_multiplier = event.shock.volatility_multiplier
    news.shock.duration_seconds = event.shock.duration_seconds


def _scenario_changed(event: ev.ScenarioChanged, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    changed = message.scenario_changed
    changed.state = event.state
    changed.name = event.name
    changed.seed = event.seed
    changed.digest = event.digest
    changed.rounds = event.rounds
    changed.elapsed_ns = event.elapsed
    changed.participant_cash_units = event.participant_cash
    changed.participant_grants.extend(grants_to_proto(event.participant_grants))
    changed.round_ends_at_ns = event.round_ends_at
    changed.next_round_starts_at_ns = event.next_round_starts_at


def _round_started(event: ev.RoundStarted, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    started = message.round_started
    started.round = event.round
    started.rounds = event.rounds
    started.ends_at_ns = event.ends_at


def _round_ended(event: ev.RoundEnded, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.round_ended.round = event.round
    message.round_ended.next_round_starts_at_ns = event.next_round_starts_at


def _account_reset(event: ev.AccountReset, message: engine_pb2.EngineEvent) -> None:
    message.account_reset.user_id = event.user_id
    message.account_reset.cash_units = event.cash


def _scores_sampled(event: ev.ScoresSampled, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    sampled = message.scores_sampled
    for score in event.scores:
        sampled.scores.add(
            user_id=score.user_id,
            equity_units=score.equity,
            pnl_units=score.pnl,
            realized_pnl_units=score.realized_pnl,
            max_drawdown_units=score.max_drawdown,
            sharpe=score.sharpe,
            round_pnl_units=score.round_pnls,
            fees_paid_units=score.fees_paid,
        )


def _conversion_executed(event: ev.ConversionExecuted, message: engine_pb2.EngineEvent) -> None:
    executed = message.conversion_executed
    executed.conversion_id = event.conversion_id
    executed.user_id = event.user_id
    executed.direction = event.direction
    executed.quantity = event.quantity
    for leg in event.legs:
        executed.legs.add(
            symbol=leg.symbol, quantity=leg.quantity, cost_units=leg.cost, position=leg.position
        )
    executed.fee_units = event.fee
    executed.realized_pnl_units = event.realized_pnl
    executed.cash_units = event.cash


def _conversion_rejected(event: ev.ConversionRejected, message: engine_pb2.EngineEvent) -> None:
    rejected = message.conversion_rejected
    rejected.conversion_id = event.conversion_id
    rejected.user_id = event.user_id
    rejected.direction = event.direction
    rejected.quantity = event.quantity
    rejected.reason = event.reason
    rejected.message = event.message


_FILLERS = {
    ev.OrderAccepted: _accepted,
    ev.OrderRejected: _rejected,
    ev.OrderFilled: _filled,
    ev.OrderCancelled: _cancelled,
    ev.OrderExpired: _expired,
    ev.CancelRejected: _cancel_rejected,
    ev.OrderAmended: _amended,
    ev.AmendRejected: _amend_rejected,
    ev.TradeExecuted: _trade,
    ev.BookLevelChanged: _book_level,
    ev.QuoteChanged: _quote,
    ev.MarketStateChanged: _market_state,
    ev.SymbolAdded: _symbol_added,
    ev.TradingDayOpened: _day_opened,
    ev.TradingDayClosed: _day_closed,
    ev.TradingHalted: _halted,
    ev.TradingResumed: _resumed,
    ev.AccountCreated: _account_created,
    ev.SettingsChanged: _settings_changed,
    ev.CashAdjusted: _cash_adjusted,
    ev.CommandRefused: _command_refused,
    ev.UserDisabled: _user_disabled,
    ev.UserEnabled: _user_enabled,
    ev.ApiKeyChanged: _api_key_changed,
    ev.NewsPublished: _news_published,
    ev.ScenarioChanged: _scenario_changed,
    ev.RoundStarted: _round_started,
    ev.RoundEnded: _round_ended,
    ev.AccountReset: _account_reset,
    ev.ScoresSampled: _scores_sampled,
    ev.ConversionExecuted: _conversion_executed,
    ev.ConversionRejected: _conversion_rejected,
}


# ---- snapshots ------------------------------------------------------------------------------


def snapshot_engine(engine: MatchingEngine) -> engine_pb2.EngineSnapshot:
    """The engine's whole domain state; the caller adds what lives around it (log offset,
    sessions, the open orders' fills, the symbols' update times)."""
    snapshot = engine_pb2.EngineSnapshot(
        format_version=SNAPSHOT_FORMAT,
        market_open=engine.market_open,
        exchange_sequence=engine.exchange_sequence,
        fees_collected_units=engine.fees_collected,
    )
    snapshot.settings.CopyFrom(settings_to_proto(engine.settings))
    if engine.last_sample_minute is not None:
        snapshot.last_sample_minute = engine.last_sample_minute
    competition = engine.competition
    snapshot.competition.CopyFrom(
        engine_pb2.CompetitionSnapshot(
            scenario_state=competition.scenario_state,
            scenario_name=competition.scenario_name,
            seed=competition.seed,
            digest=competition.digest,
            rounds=competition.rounds,
            round=competition.round,
            round_ends_at_ns=competition.round_ends_at,
            round_open=competition.round_open,
            elapsed_ns=competition.elapsed,
            running_since_ns=competition.running_since,
            paused_at_ns=competition.paused_at,
            next_round_starts_at_ns=competition.next_round_starts_at,
            participant_cash_units=competition.participant_cash,
            participant_grants=grants_to_proto(competition.participant_grants),
            news_ids=sorted(competition.news_ids),
            paused_symbols=competition.paused_symbols,
        )
    )
    for user_id, score in engine.scores.items():
        snapshot.scores.add(
            user_id=user_id,
            banked_units=score.banked,
            round_base_units=score.round_base,
            round_pnl_units=score.round_pnls,
            peak_units=score.peak,
            max_drawdown_units=score.max_drawdown,
            last_pnl_units=score.last_pnl,
            changes=score.changes,
            change_sum_units=score.change_sum,
            change_squares=str(score.change_squares),
        )
    for state in engine.symbols.values():
        snapshot.symbols.add(
            symbol=state.symbol,
            tick_size=state.tick_size,
            lot_size=state.lot_size,
            reference_price_ticks=state.reference_price,
            sequence=state.sequence,
            halted=state.halted,
            trade_count=state.trade_count,
            last_ticks=state.last,
            last_quantity=state.last_quantity,
            volume=state.volume,
            open_ticks=state.open,
            high_ticks=state.high,
            low_ticks=state.low,
            basket=[
                engine_pb2.BasketComponent(symbol=component, shares=shares)
                for component, shares in state.basket
            ],
            conversion_fee_units=state.conversion_fee,
        )
    # In arrival order: restored so, every level keeps its time priority and the engine's
    # open orders their order (which cancel-all and a round reset go by).
    for order in engine.open_orders.values():
        resting = snapshot.open_orders.add(
            reserved_cash_units=order.reserved_cash,
            maker_fee_centi_bps=order.maker_fee,
            hold_fee_centi_bps=order.hold_fee,
        )
        resting.order.CopyFrom(live_order_state(order))
    for account in engine.accounts.values():
        account_snapshot = snapshot.accounts.add(
            user_id=account.user_id,
            cash_units=account.cash,
            reserved_cash_units=account.reserved_cash,
            starting_value_units=account.starting_value,
            admin=account.admin,
            api_key_sha256=account.api_key_sha256,
            role=account.role,
            disabled=account.disabled,
            fees_paid_units=account.fees_paid,
            starting_cash_units=account.starting_cash,
        )
        for symbol, quantity, cost in account.grants:
            account_snapshot.grants.add(symbol=symbol, quantity=quantity, cost_units=cost)
        for symbol, position in account.positions.items():
            account_snapshot.positions.add(
                symbol=symbol,
                quantity=position.quantity,
                reserved=position.reserved,
                cost_units=position.cost,
                realized_pnl_units=position.realized_pnl,
            )
    for (user_id, client_order_id), order_id in engine.client_orders.items():
        snapshot.client_orders.add(
            user_id=user_id, client_order_id=client_order_id, order_id=order_id
        )
    return snapshot


def restore_engine(snapshot: engine_pb2.EngineSnapshot) -> MatchingEngine:
    """An engine in exactly the state the snapshot was taken in (format 0 converted)."""
    old_format = snapshot.format_version == 0
    if old_format:
        settings = ExchangeSettings(
            short_limit=snapshot.short_limit, max_open_orders=snapshot.max_open_orders
        )
    else:
        settings = settings_from_proto(snapshot.settings)
    engine = MatchingEngine(settings, market_open=snapshot.market_open)
    engine.exchange_sequence = snapshot.exchange_sequence
    engine.fees_collected = snapshot.fees_collected_units
    if snapshot.HasField("last_sample_minute"):
        engine.last_sample_minute = snapshot.last_sample_minute
    competition, saved = engine.competition, snapshot.competition
    competition.scenario_state = saved.scenario_state
    competition.scenario_name = saved.scenario_name
    competition.seed = saved.seed
    competition.digest = saved.digest
    competition.rounds = saved.rounds
    competition.round = saved.round
    competition.round_ends_at = saved.round_ends_at_ns
    competition.round_open = saved.round_open
    competition.elapsed = saved.elapsed_ns
    competition.running_since = saved.running_since_ns
    competition.paused_at = saved.paused_at_ns
    competition.next_round_starts_at = saved.next_round_starts_at_ns
    competition.participant_cash = saved.participant_cash_units
    competition.participant_grants = grants_from_proto(saved.participant_grants)
    competition.news_ids = set(saved.news_ids)
    competition.paused_symbols = tuple(saved.paused_symbols)
    for symbol_snapshot in snapshot.symbols:
        state = SymbolState(
            symbol_snapshot.symbol,
            symbol_snapshot.tick_size,
            symbol_snapshot.lot_size,
            symbol_snapshot.reference_price_ticks,
        )
        state.sequence = symbol_snapshot.sequence
        state.halted = symbol_snapshot.halted
        state.trade_count = symbol_snapshot.trade_count
        state.last = symbol_snapshot.last_ticks
        state.last_quantity = symbol_snapshot.last_quantity
        state.volume = symbol_snapshot.volume
        state.open = symbol_snapshot.open_ticks
        state.high = symbol_snapshot.high_ticks
        state.low = symbol_snapshot.low_ticks
        state.basket = tuple(
            (component.symbol, component.shares) for component in symbol_snapshot.basket
        )
        state.conversion_fee = symbol_snapshot.conversion_fee_units
        engine.symbols[state.symbol] = state
    keys = {user.user_id: user for user in snapshot.users}
    for account_snapshot in snapshot.accounts:
        user_id = account_snapshot.user_id
        account = Account(
            user_id,
            account_snapshot.cash_units,
            starting_value=account_snapshot.starting_value_units,
            admin=account_snapshot.admin,
            api_key_sha256=account_snapshot.api_key_sha256,
            role=account_snapshot.role,
        )
        account.disabled = account_snapshot.disabled
        account.fees_paid = account_snapshot.fees_paid_units
        account.grants = tuple(
            (grant.symbol, grant.quantity, grant.cost_units) for grant in account_snapshot.grants
        )
        account.starting_cash = (
            account_snapshot.starting_cash_units
            if snapshot.format_version >= 2
            else account_snapshot.starting_value_units
        )
        if old_format and user_id in keys:
            account.admin = keys[user_id].admin
            account.api_key_sha256 = keys[user_id].api_key_sha256
        account.reserved_cash = account_snapshot.reserved_cash_units
        for position_snapshot in account_snapshot.positions:
            if old_format:
                position = _old_format_position(position_snapshot)
            else:
                position = Position(position_snapshot.quantity, position_snapshot.cost_units)
                position.realized_pnl = position_snapshot.realized_pnl_units
            position.reserved = position_snapshot.reserved
            account.positions[position_snapshot.symbol] = position
        if old_format:
            # Format 0 kept no starting value: the one under which P&L is what the account has
            # realized plus what its positions are worth above their cost.
            account.starting_value = (
                account.cash
                + sum(position.cost for position in account.positions.values())
                - account.realized_pnl
            )
        engine.accounts[user_id] = account
    for saved_score in snapshot.scores:
        score = engine.scores[saved_score.user_id] = Score()
        score.banked = saved_score.banked_units
        score.round_base = saved_score.round_base_units
        score.round_pnls = list(saved_score.round_pnl_units)
        score.peak = saved_score.peak_units
        score.max_drawdown = saved_score.max_drawdown_units
        score.last_pnl = saved_score.last_pnl_units
        score.changes = saved_score.changes
        score.change_sum = saved_score.change_sum_units
        score.change_squares = int(saved_score.change_squares or 0)
    if snapshot.format_version < 2:
        for account in engine.accounts.values():
            if account.ranked:
                engine.scores[account.user_id] = Score()
    for resting in snapshot.open_orders:
        order = _order_from_state(resting.order)
        order.reserved_cash = resting.reserved_cash_units
        order.maker_fee = resting.maker_fee_centi_bps
        order.hold_fee = resting.hold_fee_centi_bps
        engine.symbols[order.symbol].book.side(order.side).add(order)
        engine.open_orders[order.order_id] = order
        if order.user_id:
            engine.open_order_counts[order.user_id] = (
                engine.open_order_counts.get(order.user_id, 0) + 1
            )
            account = engine.accounts.get(order.user_id)
            if account is not None and order.side == Side.BUY:
                account.position(order.symbol).buying += order.remaining
    for entry in snapshot.client_orders:
        engine.client_orders[(entry.user_id, entry.client_order_id)] = entry.order_id
    for state in engine.symbols.values():
        engine.refresh_last_quote(state)
    return engine


def _old_format_position(snapshot: engine_pb2.PositionSnapshot) -> Position:
    """Format 0 kept the average price and realized P&L as currency floats."""
    cost = round(snapshot.avg_price * snapshot.quantity * CASH_UNITS_PER_CURRENCY)
    position = Position(snapshot.quantity, cost)
    position.realized_pnl = round(snapshot.realized_pnl * CASH_UNITS_PER_CURRENCY)
    return position


def _order_from_state(state: engine_pb2.OrderState) -> Order:
    terms = OrderTerms(
        state.order_id,
        state.user_id,
        state.symbol,
        Side(state.side),
        OrderType(state.type),
        TimeInForce(state.time_in_force),
        state.price_ticks,
        state.quantity,
        state.client_order_id,
        state.created_ns,
    )
    order = Order(terms)
    order.filled_quantity = state.filled_quantity
    order.remaining = state.quantity - state.filled_quantity
    order.filled_notional = state.filled_notional_ticks
    order.status = OrderStatus(state.status)
    order.reason = Reason(state.reason)
    order.updated_at = state.updated_ns
    return order
