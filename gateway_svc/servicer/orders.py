"""OrderService: place, amend, cancel, get and list orders, convert ETF units, and the
OrderSession stream (the caller is authenticated by the interceptor).

Placing, amending and cancelling are one coroutine each (`place_order`, `amend_order`,
`cancel_order`, `cancel_all_orders`), which the unary calls and every request of an order
session run.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from exchange.internal.v1 import engine_pb2, store_pb2
from exchange.v1 import orders_pb2, orders_pb2_grpc, streams_pb2_grpc, types_pb2
from gateway_svc.exchange import (
    Exchange,
    new_order_id,
    order_from_batch,
    refusal,
    refusal_error,
)
from gateway_svc.interceptors import admit_message, current_caller
from gateway_svc.servicer.order_session import OrderSession, subscribe_order_updates
from gateway_svc.validation import (
    RequestError,
    amend_order_command,
    check_list_filter,
    convert_command,
    place_order_command,
)
from mockex import names, participant
from mockex.auth import Caller, api_key_from_metadata

log = logging.getLogger("gateway_svc")

CANCEL_ON_DISCONNECT = "x-cancel-on-disconnect"
"""Session metadata: `true` cancels the caller's open orders when the session is lost (the
client vanished or cancelled the call) rather than half-closed."""


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(
        self, exchange: Exchange, order_updates: streams_pb2_grpc.StreamServiceStub
    ) -> None:
        self.exchange = exchange
        self.order_updates = order_updates
        """stream_svc, whose StreamOrderUpdates carries an order session's fills."""
        self._cancelling: set[asyncio.Task[None]] = set()
        """Cancel-on-disconnect runs, kept until done (their session's call is gone)."""

    async def PlaceOrder(self, request, context):
        return orders_pb2.PlaceOrderResponse(
            order=await self.place_order(request, current_caller())
        )

    async def CancelOrder(self, request, context):
        return orders_pb2.CancelOrderResponse(
            order=await self.cancel_order(request, current_caller())
        )

    async def AmendOrder(self, request, context):
        return orders_pb2.AmendOrderResponse(
            order=await self.amend_order(request, current_caller())
        )

    async def CancelAllOrders(self, request, context):
        return await self.cancel_all_orders(request, current_caller())

    async def OrderSession(self, request_iterator, context):
        caller = current_caller()
        metadata = context.invocation_metadata()
        cancel_on_disconnect = _cancel_on_disconnect(metadata)
        updates = await subscribe_order_updates(self.order_updates, api_key_from_metadata(metadata))
        session = OrderSession(
            self, caller, admit_message, self.exchange.config.session_max_in_flight
        )
        ended_by_client = False
        try:
            async for response in session.responses(request_iterator, updates):
                yield response
            ended_by_client = True
        finally:
            updates.cancel()
            if cancel_on_disconnect and not ended_by_client:
                # The call is being torn down: the cancel runs on its own.
                task = asyncio.create_task(self._cancel_after_disconnect(caller))
                self._cancelling.add(task)
                task.add_done_callback(self._cancelling.discard)

    async def _cancel_after_disconnect(self, caller: Caller) -> None:
        try:
            cancelled = await self.cancel_all_orders(orders_pb2.CancelAllOrdersRequest(), caller)
        except Exception:
            log.exception("cancel on disconnect failed user=%s", caller.user_id)
            return
        log.info(
            "order session lost user=%s: %d open orders cancelled (cancel on disconnect)",
            caller.user_id,
            len(cancelled.orders),
        )

    async def place_order(
        self, request: orders_pb2.PlaceOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        exchange = self.exchange
        spec = await exchange.symbol_spec(request.symbol) if request.symbol else None
        order_id = new_order_id()
        place = place_order_command(request, caller.user_id, spec, order_id)
        batch = await exchange.run(
            engine_pb2.EngineCommand(command_id=order_id, place_order=place),
            f"orderId {order_id}: the engine did not answer in time; the order is queued and "
            "its final state will show in GET /order/status/{orderId}",
        )
        if batch.already_applied:
            return await exchange.applied_order(order_id)
        refused = refusal(batch)
        if refused is not None:
            # The clientOrderId was used today: the first order is the answer, as SPEC.md says.
            return await exchange.applied_order(refused.order_id)
        order = order_from_batch(batch, order_id, float(spec.tick_size))
        if order is None:
            raise RequestError(grpc.StatusCode.INTERNAL, f"no result for order {order_id}")
        return order

    async def GetOrder(self, request, context):
        order = await self.exchange.visible_order(request.order_id, current_caller())
        return orders_pb2.GetOrderResponse(order=order)

    async def cancel_order(
        self, request: orders_pb2.CancelOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        exchange = self.exchange
        order = await exchange.visible_order(request.order_id, caller)
        if order.status in participant.FINISHED:
            raise _finished(order)
        command = engine_pb2.EngineCommand(
            command_id=f"cancel-{new_order_id()}",
            cancel_order=engine_pb2.CancelOrderCommand(
                order_id=order.order_id, user_id=caller.user_id, is_admin=caller.admin
            ),
        )
        batch = await exchange.run(command)
        if not batch.already_applied:
            spec = await exchange.symbol_spec(order.symbol)
            cancelled = order_from_batch(batch, order.order_id, float(spec.tick_size), order.fills)
            if cancelled is not None:
                return cancelled
        latest = await exchange.applied_order(order.order_id)
        if batch.already_applied and latest.status == types_pb2.CANCELLED:
            return latest
        raise _finished(latest)

    async def amend_order(
        self, request: orders_pb2.AmendOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        exchange = self.exchange
        order = await exchange.visible_order(request.order_id, caller)
        if order.user_id != caller.user_id:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"order {order.order_id} is not yours: only its owner may amend it",
            )
        if order.status in participant.FINISHED:
            raise _finished(order, "amended")
        spec = await exchange.require_listed(order.symbol)
        amend = amend_order_command(request, caller.user_id, order, spec)
        batch = await exchange.run(
            engine_pb2.EngineCommand(command_id=f"amend-{new_order_id()}", amend_order=amend),
            f"orderId {order.order_id}: the engine did not answer in time; the amend is queued "
            "and will be applied once: GET /order/status/{orderId} shows the order",
        )
        if batch.already_applied:
            return await exchange.applied_order(order.order_id)
        for event in batch.events:
            if event.WhichOneof("event") == "amend_rejected":
                rejected = event.amend_rejected
                if rejected.reason == types_pb2.UNKNOWN_ORDER:
                    # It finished between the lookup and the engine (a fill, an expiry).
                    raise _finished(await exchange.applied_order(order.order_id), "amended")
                raise _amend_error(rejected)
        amended = order_from_batch(batch, order.order_id, float(spec.tick_size), order.fills)
        if amended is None:
            raise RequestError(grpc.StatusCode.INTERNAL, f"no result for amend of {order.order_id}")
        return amended

    async def ListOrders(self, request, context):
        check_list_filter(request.status)
        answer = await self.exchange.store.ListUserOrders(
            store_pb2.ListUserOrdersRequest(
                user_id=current_caller().user_id, status=request.status
            ),
            timeout=self.exchange.config.store_timeout_seconds,
        )
        return orders_pb2.ListOrdersResponse(orders=answer.orders)

    async def cancel_all_orders(
        self, request: orders_pb2.CancelAllOrdersRequest, caller: Caller
    ) -> orders_pb2.CancelAllOrdersResponse:
        exchange = self.exchange
        if request.symbol:
            await exchange.require_listed(request.symbol)
        batch = await exchange.run(
            engine_pb2.EngineCommand(
                command_id=f"cancel-all-{new_order_id()}",
                cancel_all=engine_pb2.CancelAllCommand(
                    user_id=caller.user_id, symbol=request.symbol
                ),
            )
        )
        refused = refusal(batch)
        if refused is not None:
            raise refusal_error(refused)
        cancelled = []
        for event in batch.events:
            if event.WhichOneof("event") == "order_cancelled":
                state = event.order_cancelled.order
                spec = await exchange.symbol_spec(state.symbol)
                previous = await exchange.find_order(state.order_id)
                fills = list(previous.fills) if previous is not None else []
                cancelled.append(participant.order(state, float(spec.tick_size), fills))
        return orders_pb2.CancelAllOrdersResponse(orders=cancelled)

    async def Convert(self, request, context):
        exchange = self.exchange
        caller = current_caller()
        spec = await exchange.symbol_spec(request.symbol) if request.symbol else None
        etfs: list[str] = []
        if spec is None or not spec.convertible:
            listed = await exchange.listed_symbols()
            etfs = [symbol for symbol, info in listed.items() if info.basket]
        conversion_id = new_order_id()
        convert = convert_command(request, caller.user_id, spec, conversion_id, etfs)
        batch = await exchange.run(
            engine_pb2.EngineCommand(command_id=f"convert-{conversion_id}", convert=convert),
            f"conversionId {conversion_id}: the engine did not answer in time; the conversion "
            "is queued and will be applied once (do not send it again): GET /account shows it",
        )
        if batch.already_applied:
            return orders_pb2.ConvertResponse(conversion=await self._applied(conversion_id))
        for event in batch.events:
            if event.WhichOneof("event") in participant.CONVERSION_EVENT_KINDS:
                return orders_pb2.ConvertResponse(conversion=participant.conversion(event))
        raise RequestError(grpc.StatusCode.INTERNAL, f"no result for conversion {conversion_id}")

    async def _applied(self, conversion_id: str) -> types_pb2.Conversion:
        """A conversion the engine had applied before (a resend after a reconnect): the result
        its cache keeps."""
        raw = await self.exchange.redis.get(names.conversion_key(conversion_id))
        if raw is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                f"conversionId {conversion_id}: the conversion was applied once but its result "
                "cannot be read now (do not send it again): GET /account shows it",
            )
        return types_pb2.Conversion.FromString(raw)


def _finished(order: types_pb2.Order, done: str = "cancelled") -> RequestError:
    status = types_pb2.OrderStatus.Name(order.status)
    return RequestError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"order {order.order_id} is already {status}; only open orders can be {done}",
    )


AMEND_REJECTION_CODES = {
    types_pb2.INVALID_ORDER: grpc.StatusCode.INVALID_ARGUMENT,
    types_pb2.NOT_ORDER_OWNER: grpc.StatusCode.PERMISSION_DENIED,
}
"""How an engine's AmendRejected reaches the participant; every other reason (market closed,
symbol halted, risk limits) is FAILED_PRECONDITION."""


def _amend_error(rejected: engine_pb2.AmendRejected) -> RequestError:
    """The order is unchanged: the reason's name first, so a program can tell the cases."""
    code = AMEND_REJECTION_CODES.get(rejected.reason, grpc.StatusCode.FAILED_PRECONDITION)
    reason = types_pb2.OrderReason.Name(rejected.reason)
    return RequestError(code, f"{reason}: {rejected.message}; order {rejected.order_id} unchanged")


def _cancel_on_disconnect(metadata) -> bool:
    values = [value for key, value in metadata or () if key == CANCEL_ON_DISCONNECT]
    if not values:
        return False
    if values[-1] not in ("true", "false"):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{CANCEL_ON_DISCONNECT} must be true or false, got {values[-1]!r}",
        )
    return values[-1] == "true"
