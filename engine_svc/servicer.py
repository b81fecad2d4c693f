"""Wire to domain: applies an EngineCommand to the MatchingEngine and returns the EngineBatch.

Also keeps the ledger of applied gateway commands (engine_svc.sessions), so that the same command
sent twice is applied once; both are replayed from the log and kept in snapshots.
"""

from __future__ import annotations

from engine_svc.codec import (
    event_to_proto,
    grants_from_proto,
    restore_engine,
    settings_from_proto,
    shock_from_proto,
    snapshot_engine,
)
from engine_svc.engine import MatchingEngine
from engine_svc.events import Event, Grant
from engine_svc.sessions import CommandLedger, SessionLedger
from exchange.internal.v1 import engine_pb2


class CommandHandler:
    def __init__(self, engine: MatchingEngine, ledger: CommandLedger | None = None) -> None:
        self.engine = engine
        self.ledger = ledger or CommandLedger()

    def is_applied(self, command: engine_pb2.EngineCommand) -> bool:
        """True for a command its gateway sent before and the engine already applied."""
        return self.ledger.is_applied(command.session_id, command.session_sequence)

    def apply(self, command: engine_pb2.EngineCommand) -> list[Event]:
        """Enum fields pass through as plain ints: the engine rejects values it does not know.
        The first command of a new minute of log time also brings that minute's scores."""
        events = self._dispatch(command)
        events.extend(self.engine.sample_scores(command.timestamp_ns))
        self.ledger.record(command.session_id, command.session_sequence, command.timestamp_ns)
        return events

    def _dispatch(self, command: engine_pb2.EngineCommand) -> list[Event]:
        engine = self.engine
        now = command.timestamp_ns
        kind = command.WhichOneof("command")
        if kind == "place_order":
            place = command.place_order
            return engine.place_order(
                place.order_id,
                place.user_id,
                place.symbol,
                place.side,
                place.type,
                place.time_in_force,
                place.price_ticks,
                place.quantity,
                now,
                place.client_order_id,
            )
        if kind == "cancel_order":
            cancel = command.cancel_order
            return engine.cancel_order(cancel.order_id, cancel.user_id, now, cancel.is_admin)
        if kind == "amend_order":
            amend = command.amend_order
            return engine.amend_order(
                amend.order_id,
                amend.user_id,
                amend.price_ticks if amend.HasField("price_ticks") else None,
                amend.quantity if amend.HasField("quantity") else None,
                now,
            )
        if kind == "open_market":
            return engine.open_market(now)
        if kind == "close_market":
            events = engine.close_market(now)
            self.ledger.forget_idle(now)
            return events
        if kind == "halt_trading":
            return engine.halt(now, command.halt_trading.symbol)
        if kind == "resume_trading":
            return engine.resume(now, command.resume_trading.symbol)
        if kind == "add_symbol":
            add = command.add_symbol
            return engine.add_symbol(
                add.symbol,
                now,
                add.tick_size or "0.01",
                add.lot_size or 1,
                add.reference_price_ticks,
                tuple((component.symbol, component.shares) for component in add.basket),
                add.conversion_fee_units,
            )
        if kind == "create_account":
            create = command.create_account
            # Logs from before grants: a plain quantity per symbol, at the reference price.
            legacy = tuple(
                Grant(symbol, create.positions[symbol], 0) for symbol in sorted(create.positions)
            )
            cash, grants = create.cash_units, grants_from_proto(create.grants) + legacy
            if create.scenario_terms:
                competition = engine.competition
                cash, grants = competition.participant_cash, competition.participant_grants
            return engine.create_account(
                create.user_id,
                cash,
                now,
                grants,
                create.admin,
                create.api_key_sha256,
                create.role,
            )
        if kind == "adjust_cash":
            adjust = command.adjust_cash
            return engine.adjust_cash(adjust.user_id, adjust.amount_units, now)
        if kind == "configure_exchange":
            return engine.configure(settings_from_proto(command.configure_exchange.settings), now)
        if kind == "disable_user":
            return engine.disable_user(command.disable_user.user_id, now)
        if kind == "enable_user":
            return engine.enable_user(command.enable_user.user_id, now)
        if kind == "set_api_key":
            key = command.set_api_key
            return engine.set_api_key(key.user_id, key.api_key_sha256, now)
        if kind == "cancel_all":
            cancel_all = command.cancel_all
            return engine.cancel_all(
                cancel_all.user_id, cancel_all.symbol, now, cancel_all.is_admin
            )
        if kind == "publish_news":
            news = command.publish_news
            return engine.publish_news(
                news.news_id, news.headline, tuple(news.symbols), shock_from_proto(news.shock), now
            )
        if kind == "set_scenario":
            scenario = command.set_scenario
            return engine.set_scenario(
                scenario.state,
                now,
                scenario.name,
                scenario.seed,
                scenario.digest,
                scenario.rounds,
                scenario.participant_cash_units,
                grants_from_proto(scenario.participant_grants),
            )
        if kind == "start_round":
            start = command.start_round
            return engine.start_round(
                start.round, start.ends_at_ns, start.reset_accounts, now, start.restart
            )
        if kind == "end_round":
            end = command.end_round
            return engine.end_round(end.round, now, end.next_round_starts_at_ns)
        if kind == "convert":
            convert = command.convert
            return engine.convert(
                convert.conversion_id,
                convert.user_id,
                convert.symbol,
                convert.direction,
                convert.quantity,
                now,
            )
        raise ValueError(f"EngineCommand without a command: {command!r}")

    def batch(self, command: engine_pb2.EngineCommand) -> engine_pb2.EngineBatch:
        """The command applied, as the log record that carries it with its events."""
        events = self.apply(command)
        batch = engine_pb2.EngineBatch()
        batch.command.CopyFrom(command)
        batch.events.extend(event_to_proto(event) for event in events)
        return batch

    def snapshot(self) -> engine_pb2.EngineSnapshot:
        """The engine's state and the ledger; the caller adds the log offset and the views'."""
        snapshot = snapshot_engine(self.engine)
        for session_id, ledger in self.ledger.sessions.items():
            snapshot.sessions.add(
                session_id=session_id,
                applied_through=ledger.applied_through,
                applied_after=sorted(ledger.applied_after),
                last_applied_ns=ledger.last_applied_ns,
            )
        return snapshot

    @classmethod
    def restore(cls, snapshot: engine_pb2.EngineSnapshot) -> CommandHandler:
        ledger = CommandLedger()
        for session in snapshot.sessions:
            restored = ledger.sessions[session.session_id] = SessionLedger()
            restored.applied_through = session.applied_through
            restored.applied_after = set(session.applied_after)
            restored.last_applied_ns = session.last_applied_ns
        return cls(restore_engine(snapshot), ledger)
