"""Wire to domain: applies an EngineCommand to the MatchingEngine and returns the EngineBatch."""

from __future__ import annotations

from engine_svc.codec import event_to_proto
from engine_svc.engine import MatchingEngine
from engine_svc.events import Event
from exchange.internal.v1 import engine_pb2


class CommandHandler:
    """Applies commands in log order. Admin commands the engine refuses (a duplicate symbol,
    say) produce no events; the gateway validates them first, so this is a safety net."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.users: dict[str, engine_pb2.UserRecord] = {}
        """API key hash -> user, from CreateAccountCommand (kept in snapshots)."""

    def apply(self, command: engine_pb2.EngineCommand) -> list[Event]:
        """Enum fields pass through as plain ints: the engine rejects values it does not know."""
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
        try:
            if kind == "open_market":
                return engine.open_market(now)
            if kind == "close_market":
                return engine.close_market(now)
            if kind == "halt_trading":
                return engine.halt(now, command.halt_trading.symbol)
            if kind == "resume_trading":
                return engine.resume(now, command.resume_trading.symbol)
            if kind == "add_symbol":
                add = command.add_symbol
                return engine.add_symbol(
                    add.symbol, now, add.tick_size or "0.01", add.lot_size or 1
                )
            if kind == "create_account":
                create = command.create_account
                engine.create_account(create.user_id, create.cash_units, dict(create.positions))
                if create.api_key_sha256:
                    self.users[create.api_key_sha256] = engine_pb2.UserRecord(
                        user_id=create.user_id,
                        admin=create.admin,
                        api_key_sha256=create.api_key_sha256,
                    )
                return []
        except ValueError:
            return []
        raise ValueError(f"EngineCommand without a command: {command!r}")

    def batch(self, command: engine_pb2.EngineCommand, stream_id: str) -> engine_pb2.EngineBatch:
        """The command applied, as the log record that carries it with its events."""
        events = self.apply(command)
        batch = engine_pb2.EngineBatch(stream_id=stream_id)
        batch.command.CopyFrom(command)
        batch.events.extend(event_to_proto(event) for event in events)
        return batch
