"""The order session's dispatch (gateway_svc.servicer.order_session) with a fake order entry,
and the interceptor's stream path on an in-process gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from exchange.v1 import orders_pb2, orders_pb2_grpc, streams_pb2, types_pb2
from gateway_svc.interceptors import GatewayInterceptor, admit_message, current_caller
from gateway_svc.rate_limit import TokenBucketLimiter
from gateway_svc.servicer.order_session import OrderSession
from gateway_svc.validation import RequestError
from mockex.auth import Caller
from mockex.grpc_server import start_grpc_server

ALICE = Caller(user_id="alice", admin=False)


class FakeEntry:
    """Places answer NEW orders once their release event is set; quantity 0 is refused."""

    def __init__(self) -> None:
        self.release: dict[str, asyncio.Event] = {}
        self.started: list[str] = []

    async def place_order(
        self, request: orders_pb2.PlaceOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        self.started.append(request.client_order_id)
        if request.quantity <= 0:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"quantity must be positive, got {request.quantity}",
            )
        release = self.release.get(request.client_order_id)
        if release is not None:
            await release.wait()
        return types_pb2.Order(
            order_id=f"o-{request.client_order_id}",
            user_id=caller.user_id,
            client_order_id=request.client_order_id,
            status=types_pb2.NEW,
        )

    async def amend_order(
        self, request: orders_pb2.AmendOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        return types_pb2.Order(order_id=request.order_id, quantity=request.quantity)

    async def cancel_order(
        self, request: orders_pb2.CancelOrderRequest, caller: Caller
    ) -> types_pb2.Order:
        return types_pb2.Order(order_id=request.order_id, status=types_pb2.CANCELLED)

    async def cancel_all_orders(
        self, request: orders_pb2.CancelAllOrdersRequest, caller: Caller
    ) -> orders_pb2.CancelAllOrdersResponse:
        return orders_pb2.CancelAllOrdersResponse(
            orders=[types_pb2.Order(order_id="o-1", status=types_pb2.CANCELLED)]
        )


def place(
    request_id: int, client_order_id: str, quantity: int = 1
) -> orders_pb2.OrderSessionRequest:
    return orders_pb2.OrderSessionRequest(
        request_id=request_id,
        place=orders_pb2.PlaceOrderRequest(
            symbol="ACME", quantity=quantity, client_order_id=client_order_id
        ),
    )


async def from_queue(queue: asyncio.Queue) -> AsyncIterator:
    """Yields what the test puts, until it puts None."""
    while (item := await queue.get()) is not None:
        yield item


async def settle() -> None:
    """Lets every ready task run until each waits on something (no clock involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


def allow() -> None:
    """An admission that never throttles."""


async def test_answers_carry_their_request_id_in_completion_order() -> None:
    entry = FakeEntry()
    entry.release["slow"] = asyncio.Event()
    requests: asyncio.Queue = asyncio.Queue()
    session = OrderSession(entry, ALICE, allow, max_in_flight=8)
    responses = session.responses(from_queue(requests), from_queue(asyncio.Queue()))
    requests.put_nowait(place(1, "slow"))
    requests.put_nowait(place(2, "fast"))
    first = await anext(responses)
    entry.release["slow"].set()
    second = await anext(responses)
    requests.put_nowait(None)
    assert [
        (first.request_id, first.order.order_id),
        (second.request_id, second.order.order_id),
    ] == [
        (2, "o-fast"),
        (1, "o-slow"),
    ]
    assert [response async for response in responses] == []


async def test_a_refused_request_is_answered_with_its_error_and_the_session_goes_on() -> None:
    requests: asyncio.Queue = asyncio.Queue()
    session = OrderSession(FakeEntry(), ALICE, allow, max_in_flight=1)
    responses = session.responses(from_queue(requests), from_queue(asyncio.Queue()))
    requests.put_nowait(place(7, "bad", quantity=0))
    refused = await anext(responses)
    requests.put_nowait(place(8, "good"))
    accepted = await anext(responses)
    requests.put_nowait(None)
    assert refused.request_id == 7
    assert (refused.error.code, refused.error.code_name) == (3, "INVALID_ARGUMENT")
    assert refused.error.message == "quantity must be positive, got 0"
    assert (accepted.request_id, accepted.order.order_id) == (8, "o-good")
    assert [response async for response in responses] == []


async def test_each_message_spends_the_rate_limit() -> None:
    limiter = TokenBucketLimiter(rate_per_second=1, burst=2)

    def admit() -> None:
        if limiter.take(ALICE.user_id, 0.0):
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "retry after 1s")

    requests: asyncio.Queue = asyncio.Queue()
    for request_id in (1, 2, 3):
        requests.put_nowait(place(request_id, f"c{request_id}"))
    requests.put_nowait(None)
    session = OrderSession(FakeEntry(), ALICE, admit, max_in_flight=8)
    answers = {
        response.request_id: response.WhichOneof("response")
        async for response in session.responses(from_queue(requests), from_queue(asyncio.Queue()))
    }
    assert sorted(answers.values()) == ["error", "order", "order"]


async def test_amend_cancel_cancel_all_and_an_empty_request() -> None:
    requests: asyncio.Queue = asyncio.Queue()
    requests.put_nowait(
        orders_pb2.OrderSessionRequest(
            request_id=1, cancel=orders_pb2.CancelOrderRequest(order_id="o-9")
        )
    )
    requests.put_nowait(
        orders_pb2.OrderSessionRequest(request_id=2, cancel_all=orders_pb2.CancelAllOrdersRequest())
    )
    requests.put_nowait(orders_pb2.OrderSessionRequest(request_id=3))
    requests.put_nowait(
        orders_pb2.OrderSessionRequest(
            request_id=4, amend=orders_pb2.AmendOrderRequest(order_id="o-8", quantity=3)
        )
    )
    requests.put_nowait(None)
    session = OrderSession(FakeEntry(), ALICE, allow, max_in_flight=8)
    answers = {
        response.request_id: response
        async for response in session.responses(from_queue(requests), from_queue(asyncio.Queue()))
    }
    assert answers[1].order.status == types_pb2.CANCELLED
    assert [order.order_id for order in answers[2].cancelled_all.orders] == ["o-1"]
    assert answers[3].error.code_name == "INVALID_ARGUMENT"
    assert "set one of place, amend, cancel or cancelAll" in answers[3].error.message
    assert (answers[4].order.order_id, answers[4].order.quantity) == ("o-8", 3)


async def test_no_message_is_read_beyond_the_in_flight_limit() -> None:
    entry = FakeEntry()
    requests: asyncio.Queue = asyncio.Queue()
    for request_id in range(1, 5):
        entry.release[f"c{request_id}"] = asyncio.Event()
        requests.put_nowait(place(request_id, f"c{request_id}"))
    session = OrderSession(entry, ALICE, allow, max_in_flight=2)
    responses = session.responses(from_queue(requests), from_queue(asyncio.Queue()))
    pending = asyncio.ensure_future(anext(responses))
    await settle()
    assert entry.started == ["c1", "c2"]
    entry.release["c1"].set()
    assert (await pending).request_id == 1
    pending = asyncio.ensure_future(anext(responses))  # answer 1 written: its slot is free
    await settle()
    assert entry.started == ["c1", "c2", "c3"]
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending


async def test_fills_are_forwarded_and_other_updates_are_not() -> None:
    updates: asyncio.Queue = asyncio.Queue()
    fill = streams_pb2.FillUpdate(order_id="o-1", trade_id="t-1", symbol="ACME", quantity=2)
    updates.put_nowait(
        streams_pb2.StreamOrderUpdatesResponse(order=types_pb2.Order(order_id="o-1"))
    )
    updates.put_nowait(streams_pb2.StreamOrderUpdatesResponse(fill=fill))
    session = OrderSession(FakeEntry(), ALICE, allow, max_in_flight=2)
    responses = session.responses(from_queue(asyncio.Queue()), from_queue(updates))
    forwarded = await anext(responses)
    assert (forwarded.request_id, forwarded.fill) == (0, fill)
    updates.put_nowait(None)
    with pytest.raises(RequestError) as cut_off:
        await anext(responses)
    assert cut_off.value.code == grpc.StatusCode.UNAVAILABLE
    assert "fills was cut off" in cut_off.value.message


class EchoSession(orders_pb2_grpc.OrderServiceServicer):
    """Answers each request with an order of the caller's, after admit_message()."""

    async def OrderSession(self, request_iterator, context):
        async for request in request_iterator:
            try:
                admit_message()
            except RequestError as exc:
                yield orders_pb2.OrderSessionResponse(
                    request_id=request.request_id,
                    error=orders_pb2.SessionError(code_name=exc.code.name, message=exc.message),
                )
                continue
            yield orders_pb2.OrderSessionResponse(
                request_id=request.request_id,
                order=types_pb2.Order(user_id=current_caller().user_id),
            )


class FakeAuthenticator:
    def __init__(self) -> None:
        self.lookups = 0

    async def caller(self, api_key: str) -> Caller | None:
        self.lookups += 1
        return ALICE if api_key == "mx_alice" else None


@pytest.fixture
async def interceptor_server():
    authenticator = FakeAuthenticator()
    interceptor = GatewayInterceptor(authenticator, TokenBucketLimiter(1, 3))
    started = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: orders_pb2_grpc.add_OrderServiceServicer_to_server(EchoSession(), server),
        ["exchange.v1.OrderService"],
        interceptors=[interceptor],
    )
    yield started, authenticator
    await started.stop(0)


async def test_the_interceptor_authenticates_a_session_once_and_limits_each_message(
    interceptor_server,
) -> None:
    server, authenticator = interceptor_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        requests = [orders_pb2.OrderSessionRequest(request_id=n) for n in range(1, 6)]
        call = stub.OrderSession(iter(requests), metadata=(("x-api-key", "mx_alice"),))
        answers = [response async for response in call]
        assert await call.code() == grpc.StatusCode.OK
    assert authenticator.lookups == 1
    assert [answer.order.user_id for answer in answers[:3]] == ["alice"] * 3
    assert [answer.error.code_name for answer in answers[3:]] == ["RESOURCE_EXHAUSTED"] * 2
    assert "rate limit of 1 requests/s" in answers[3].error.message


async def test_a_session_with_an_unknown_key_is_unauthenticated(interceptor_server) -> None:
    server, _ = interceptor_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        call = stub.OrderSession(
            iter([orders_pb2.OrderSessionRequest(request_id=1)]),
            metadata=(("x-api-key", "mx_wrong"),),
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
