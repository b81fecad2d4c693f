"""What every servicer of the gateway shares: the clients, symbol specifications, the engine's
answers and order lookups."""

from __future__ import annotations

import secrets
import time

import grpc
from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2, simulator_pb2_grpc, store_pb2, store_pb2_grpc
from exchange.v1 import types_pb2
from gateway_svc.config import GatewayConfig
from gateway_svc.engine_client import EngineClient, EngineTimeout
from gateway_svc.validation import RequestError, SymbolSpec, check_order_id, check_symbol_name
from mockex import names, participant
from mockex.auth import Caller
from mockex.caches import check_complete

REFUSAL_CODES = {
    engine_pb2.REFUSAL_REASON_ACCOUNT_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    engine_pb2.REFUSAL_REASON_SYMBOL_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    engine_pb2.REFUSAL_REASON_UNKNOWN_SYMBOL: grpc.StatusCode.NOT_FOUND,
    engine_pb2.REFUSAL_REASON_UNKNOWN_ACCOUNT: grpc.StatusCode.NOT_FOUND,
    engine_pb2.REFUSAL_REASON_INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    engine_pb2.REFUSAL_REASON_DUPLICATE_NEWS_ID: grpc.StatusCode.ALREADY_EXISTS,
    engine_pb2.REFUSAL_REASON_FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}


def new_order_id() -> str:
    """Roughly time-ordered, unique across gateway instances."""
    return f"{time.time_ns():x}{secrets.token_hex(3)}"


def refusal(batch: engine_pb2.EngineBatch) -> engine_pb2.CommandRefused | None:
    """The engine's refusal of the batch's command, if it refused it."""
    for event in batch.events:
        if event.WhichOneof("event") == "command_refused":
            return event.command_refused
    return None


def refusal_error(refused: engine_pb2.CommandRefused) -> RequestError:
    return RequestError(
        REFUSAL_CODES.get(refused.reason, grpc.StatusCode.FAILED_PRECONDITION), refused.message
    )


def order_from_batch(
    batch: engine_pb2.EngineBatch,
    order_id: str,
    tick_size: float,
    previous_fills: list[types_pb2.Fill] | None = None,
) -> types_pb2.Order | None:
    """The order as the engine left it after this batch, with every fill."""
    state = None
    fills = list(previous_fills or ())
    for event in batch.events:
        kind = event.WhichOneof("event")
        if kind not in participant.ORDER_EVENT_KINDS:
            continue
        event_state = getattr(event, kind).order
        if event_state.order_id != order_id:
            continue
        state = event_state
        if kind == "order_filled":
            filled = event.order_filled
            fills.append(
                participant.fill(
                    filled.trade_id,
                    filled.price_ticks,
                    filled.quantity,
                    event.timestamp_ns,
                    tick_size,
                    filled.fee_units,
                )
            )
    return None if state is None else participant.order(state, tick_size, fills)


class Exchange:
    def __init__(
        self,
        config: GatewayConfig,
        redis: Redis,
        engine: EngineClient,
        store: store_pb2_grpc.StoreServiceStub,
        simulator: simulator_pb2_grpc.SimulatorServiceStub,
    ) -> None:
        self.config = config
        self.redis = redis
        self.engine = engine
        self.store = store
        self.simulator = simulator
        self._symbols: dict[str, SymbolSpec] = {}

    async def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        """A listed symbol's specification (it never changes, so it is kept once read)."""
        spec = self._symbols.get(symbol)
        if spec is None:
            raw = await self.redis.hget(names.SYMBOLS_KEY, symbol)
            if raw is None:
                await check_complete(self.redis)
                return None
            spec = self._symbols[symbol] = SymbolSpec.from_info(
                types_pb2.SymbolInfo.FromString(raw)
            )
        return spec

    async def require_listed(self, symbol: str) -> SymbolSpec:
        """The symbol's specification; NOT_FOUND when the exchange does not list it."""
        check_symbol_name(symbol)
        spec = await self.symbol_spec(symbol)
        if spec is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"symbol {symbol!r} is not listed")
        return spec

    async def listed_symbols(self) -> dict[str, types_pb2.SymbolInfo]:
        raw = await self.redis.hgetall(names.SYMBOLS_KEY)
        if not raw:
            await check_complete(self.redis)
        return {key.decode(): types_pb2.SymbolInfo.FromString(value) for key, value in raw.items()}

    async def cached_accounts(self) -> list[engine_pb2.CachedAccount]:
        raw = await self.redis.hgetall(names.ACCOUNTS_KEY)
        if not raw:
            await check_complete(self.redis)
        return [engine_pb2.CachedAccount.FromString(value) for value in raw.values()]

    async def settings(self) -> engine_pb2.ExchangeSettings:
        raw = await self.redis.get(names.SETTINGS_KEY)
        if raw is None:
            await check_complete(self.redis)
        return engine_pb2.ExchangeSettings.FromString(raw or b"")

    async def run(
        self, command: engine_pb2.EngineCommand, timeout_message: str = "", urgent: bool = False
    ) -> engine_pb2.EngineBatch:
        """The engine's batch for `command`; DEADLINE_EXCEEDED with `timeout_message` (or one
        naming the command) when it does not answer in time. `urgent` (an organizer's command)
        is taken even when the gateway is busy."""
        timeout = self.config.engine_timeout_seconds
        try:
            return await self.engine.execute(command, timeout, urgent)
        except EngineTimeout as exc:
            raise RequestError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                timeout_message
                or f"the engine did not answer in {timeout:g}s for command "
                f"{command.command_id}; it will still be processed",
            ) from exc

    async def find_order(self, order_id: str) -> types_pb2.Order | None:
        """From the engine's cache, else from the store, which first catches up with the log:
        either way the answer holds every change the exchange has already answered about."""
        raw = await self.redis.get(names.order_key(order_id))
        if raw is not None:
            return types_pb2.Order.FromString(raw)
        answer = await self.store.GetStoredOrder(
            store_pb2.GetStoredOrderRequest(order_id=order_id),
            timeout=self.config.store_timeout_seconds,
        )
        return answer.order if answer.found else None

    async def visible_order(self, order_id: str, caller: Caller) -> types_pb2.Order:
        """The order if the caller may see it; NOT_FOUND otherwise (never reveal others')."""
        check_order_id(order_id)
        order = await self.find_order(order_id)
        if order is None or (order.user_id != caller.user_id and not caller.admin):
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"order {order_id!r} not found")
        return order

    async def applied_order(self, order_id: str) -> types_pb2.Order:
        """An order the engine is known to have taken (a command applied before, a duplicate
        clientOrderId's first order): its state now."""
        order = await self.find_order(order_id)
        if order is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                f"orderId {order_id}: the order was taken but cannot be read yet; its state "
                "will show in GET /order/status/{orderId}",
            )
        return order
