"""OrderSession: one bot's stream of places, amends and cancels, each answered with its
request_id, and the bot's own fills in between (docs/order-sessions.md).

Every request runs the coroutine its unary call runs (OrderServicer.place_order, ...), so the
rules, limits and clientOrderId idempotency are the unary calls'. The interceptor has
authenticated the stream; each message spends the rate limit through `admit`, and a request's
error becomes its answer, mapped as the interceptor maps a unary call's. Up to `max_in_flight`
requests are processed or waiting to be written at once, answered as they complete; beyond that
the session reads no further message, so HTTP/2 flow control holds the client back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc

from exchange.v1 import orders_pb2, streams_pb2, streams_pb2_grpc, types_pb2
from gateway_svc.interceptors import MAPPED_ERRORS, error_status
from gateway_svc.validation import RequestError
from mockex.auth import API_KEY_METADATA, Caller

SESSION_METHOD = "/exchange.v1.OrderService/OrderSession"

_Outgoing = orders_pb2.OrderSessionResponse | BaseException | None
"""What the writer takes from the outbox: a response, the error that ends the session, or None
once every request of a half-closed session is answered."""


class OrderEntry(Protocol):
    """The unary calls' logic, one coroutine each (OrderServicer)."""

    async def place_order(
        self, request: orders_pb2.PlaceOrderRequest, caller: Caller
    ) -> types_pb2.Order: ...

    async def amend_order(
        self, request: orders_pb2.AmendOrderRequest, caller: Caller
    ) -> types_pb2.Order: ...

    async def cancel_order(
        self, request: orders_pb2.CancelOrderRequest, caller: Caller
    ) -> types_pb2.Order: ...

    async def cancel_all_orders(
        self, request: orders_pb2.CancelAllOrdersRequest, caller: Caller
    ) -> orders_pb2.CancelAllOrdersResponse: ...


async def subscribe_order_updates(
    stub: streams_pb2_grpc.StreamServiceStub, api_key: str
) -> grpc.aio.UnaryStreamCall:
    """The caller's order updates from stream_svc, returned once stream_svc has subscribed (it
    sends its headers then), so no fill of an order the session places afterwards is missed."""
    call = stub.StreamOrderUpdates(
        streams_pb2.StreamOrderUpdatesRequest(), metadata=((API_KEY_METADATA, api_key),)
    )
    await call.initial_metadata()
    if call.done():
        details = await call.details()
        raise RequestError(
            grpc.StatusCode.UNAVAILABLE,
            f"the feed of this session's fills is unavailable ({details}); open the session "
            "again shortly",
        )
    return call


class OrderSession:
    def __init__(
        self,
        entry: OrderEntry,
        caller: Caller,
        admit: Callable[[], None],
        max_in_flight: int,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._entry = entry
        self._caller = caller
        self._admit = admit
        self._slots = asyncio.Semaphore(max_in_flight)
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=2 * max_in_flight)
        self._answering: set[asyncio.Task[None]] = set()

    async def responses(
        self,
        requests: AsyncIterator[orders_pb2.OrderSessionRequest],
        updates: AsyncIterator[streams_pb2.StreamOrderUpdatesResponse],
    ) -> AsyncIterator[orders_pb2.OrderSessionResponse]:
        """Answers and fills to write, until the client has half-closed and every request is
        answered; raises what ends the session early (the feed of fills cut off, a bug)."""
        reader = asyncio.create_task(self._read(requests))
        forwarder = asyncio.create_task(self._forward_fills(updates))
        try:
            while True:
                item = await self._outbox.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.WhichOneof("response") != "fill":
                    self._slots.release()
        finally:
            tasks = [reader, forwarder, *self._answering]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[orders_pb2.OrderSessionRequest]) -> None:
        """Takes a slot before reading each message: the backpressure."""
        iterator = aiter(requests)
        while True:
            await self._slots.acquire()
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                break
            task = asyncio.create_task(self._answer(request))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        await asyncio.gather(*self._answering)
        await self._outbox.put(None)

    async def _answer(self, request: orders_pb2.OrderSessionRequest) -> None:
        try:
            response = await self._dispatch(request)
        except MAPPED_ERRORS as exc:
            code, message = error_status(exc, SESSION_METHOD)
            response = orders_pb2.OrderSessionResponse(
                error=orders_pb2.SessionError(
                    code=code.value[0], code_name=code.name, message=message
                )
            )
        except Exception as exc:  # a bug ends the session, as it would end a unary call
            await self._outbox.put(exc)
            return
        response.request_id = request.request_id
        await self._outbox.put(response)

    async def _dispatch(
        self, request: orders_pb2.OrderSessionRequest
    ) -> orders_pb2.OrderSessionResponse:
        self._admit()
        kind = request.WhichOneof("request")
        if kind == "place":
            order = await self._entry.place_order(request.place, self._caller)
            return orders_pb2.OrderSessionResponse(order=order)
        if kind == "amend":
            order = await self._entry.amend_order(request.amend, self._caller)
            return orders_pb2.OrderSessionResponse(order=order)
        if kind == "cancel":
            order = await self._entry.cancel_order(request.cancel, self._caller)
            return orders_pb2.OrderSessionResponse(order=order)
        if kind == "cancel_all":
            cancelled = await self._entry.cancel_all_orders(request.cancel_all, self._caller)
            return orders_pb2.OrderSessionResponse(cancelled_all=cancelled)
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request {request.request_id}: set one of place, amend, cancel or cancelAll",
        )

    async def _forward_fills(
        self, updates: AsyncIterator[streams_pb2.StreamOrderUpdatesResponse]
    ) -> None:
        """The caller's fills (other order updates are StreamOrderUpdates' job). Without its
        feed a session would miss fills silently, so a feed that ends ends the session."""
        try:
            async for update in updates:
                if update.WhichOneof("payload") == "fill":
                    await self._outbox.put(orders_pb2.OrderSessionResponse(fill=update.fill))
            reason = "it ended"
            code = grpc.StatusCode.UNAVAILABLE
        except grpc.aio.AioRpcError as exc:
            reason = exc.details() or exc.code().name
            code = (
                exc.code()
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                else grpc.StatusCode.UNAVAILABLE
            )
        await self._outbox.put(
            RequestError(
                code,
                f"the feed of this session's fills was cut off ({reason}); open a new session "
                "(GET /orders shows every fill, and repeating an order with the same "
                "clientOrderId is safe)",
            )
        )
