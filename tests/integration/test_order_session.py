"""The OrderSession stream on the real stack: the unary calls' answers, errors, limits and
clientOrderId rules, with request ids, several requests in flight and the caller's fills."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from exchange.v1 import orders_pb2, streams_pb2, types_pb2
from mockex.stack import ExchangeStack
from tests.integration.conftest import (
    ADMIN_KEY,
    MAX_OPEN_ORDERS,
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_SECOND,
)
from tests.integration.exchange_client import Exchange, Participant, eventually, place_request

pytestmark = pytest.mark.integration

ANSWER_TIMEOUT = 15.0


class Session:
    """One participant's order session: send() returns a future of the request's answer;
    fills land in `fills`."""

    def __init__(self, trader: Participant) -> None:
        self._requests: asyncio.Queue[orders_pb2.OrderSessionRequest | None] = asyncio.Queue()
        self._request_ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[orders_pb2.OrderSessionResponse]] = {}
        self.fills: asyncio.Queue[streams_pb2.FillUpdate] = asyncio.Queue()
        self.call = trader.orders.OrderSession(self._outgoing(), metadata=trader.metadata)
        self._reader = asyncio.ensure_future(self._read())

    async def _outgoing(self) -> AsyncIterator[orders_pb2.OrderSessionRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                if response.WhichOneof("response") == "fill":
                    self.fills.put_nowait(response.fill)
                else:
                    self._answers.pop(response.request_id).set_result(response)
        except grpc.aio.AioRpcError as exc:
            for answer in self._answers.values():
                answer.set_exception(exc)

    def send(self, **request: object) -> asyncio.Future[orders_pb2.OrderSessionResponse]:
        request_id = next(self._request_ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        self._requests.put_nowait(orders_pb2.OrderSessionRequest(request_id=request_id, **request))
        return answer

    async def request(self, **request: object) -> orders_pb2.OrderSessionResponse:
        return await asyncio.wait_for(self.send(**request), ANSWER_TIMEOUT)

    async def place(self, *args: object, **terms: object) -> orders_pb2.OrderSessionResponse:
        return await self.request(place=place_request(*args, **terms))

    async def close(self) -> grpc.StatusCode:
        """Half-closes; the server answers what is in flight and ends the stream."""
        self._requests.put_nowait(None)
        await asyncio.wait_for(self._reader, ANSWER_TIMEOUT)
        return await self.call.code()


@pytest.fixture
async def exchange(exchange_stack: ExchangeStack):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}")
    yield Exchange(channel, ADMIN_KEY)
    await channel.close()


async def test_place_and_cancel_are_answered_with_their_request_ids(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    placed = await session.place(symbol, "BUY", 5, 50.0)
    assert placed.WhichOneof("response") == "order"
    assert (placed.request_id, placed.order.status) == (1, types_pb2.NEW)
    assert placed.order == await trader.get(placed.order.order_id)

    cancelled = await session.request(
        cancel=orders_pb2.CancelOrderRequest(order_id=placed.order.order_id)
    )
    assert (cancelled.request_id, cancelled.order.status) == (2, types_pb2.CANCELLED)
    again = await session.request(
        cancel=orders_pb2.CancelOrderRequest(order_id=placed.order.order_id)
    )
    assert (again.error.code, again.error.code_name) == (9, "FAILED_PRECONDITION")

    await session.place(symbol, "BUY", 1, 40.0)
    all_cancelled = await session.request(cancel_all=orders_pb2.CancelAllOrdersRequest())
    assert [order.status for order in all_cancelled.cancelled_all.orders] == [types_pb2.CANCELLED]
    assert await session.close() == grpc.StatusCode.OK


async def test_a_resting_orders_fill_arrives_on_the_session(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    seller = await exchange.participant(positions={symbol: 10})
    buyer = await exchange.participant()
    session = Session(seller)
    resting = (await session.place(symbol, "SELL", 10, 101.25)).order
    taker = await buyer.place(symbol, "BUY", 4, 102.0)
    fill = await asyncio.wait_for(session.fills.get(), ANSWER_TIMEOUT)
    assert (fill.order_id, fill.symbol, fill.side) == (resting.order_id, symbol, types_pb2.SELL)
    assert (fill.trade_id, fill.price, fill.quantity) == (taker.fills[0].trade_id, 101.25, 4)
    assert session.fills.empty()  # the buyer's fill is not the seller's
    await session.close()


async def test_a_repeated_client_order_id_answers_the_first_order(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    first = await session.place(symbol, "BUY", 1, 10.0, client_order_id="cid-1")
    both = await asyncio.gather(
        session.place(symbol, "BUY", 2, 11.0, client_order_id="cid-1"),
        session.place(symbol, "BUY", 2, 11.0, client_order_id="cid-1"),
    )
    assert {answer.order.order_id for answer in both} == {first.order.order_id}
    assert (await trader.place(symbol, "BUY", 3, 12.0, client_order_id="cid-1")).order_id == (
        first.order.order_id
    )

    unary_first = await trader.place(symbol, "BUY", 1, 10.0, client_order_id="cid-2")
    over_session = await session.place(symbol, "SELL", 9, 13.0, client_order_id="cid-2")
    assert over_session.order == await trader.get(unary_first.order_id)
    await session.close()


async def test_a_bad_request_is_answered_with_the_unary_error_and_the_session_goes_on(
    exchange: Exchange,
) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    for bad in (
        place_request(symbol, "BUY", 0, 10.0),
        place_request("NOPE", "BUY", 1, 10.0),
        place_request(symbol, "BUY", 1, 10.001),
    ):
        answer = await session.request(place=bad)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await trader.orders.PlaceOrder(bad, metadata=trader.metadata, timeout=15)
        assert (answer.error.code, answer.error.code_name) == (
            unary.value.code().value[0],
            unary.value.code().name,
        )
        assert answer.error.message == unary.value.details()
    assert "quantity" in (await session.place(symbol, "BUY", 0, 10.0)).error.message
    assert (await session.place(symbol, "BUY", 1, 10.0)).order.status == types_pb2.NEW
    assert await session.close() == grpc.StatusCode.OK


async def test_a_session_with_a_wrong_key_is_unauthenticated(exchange: Exchange) -> None:
    stranger = Participant(exchange.channel, "nobody", "mx_not_a_key")
    # Read before writing: a message written after the server has ended the call fails on the
    # client's side (grpc.aio reports INTERNAL "Failed execute_batch" then), not the server's.
    call = stranger.orders.OrderSession(metadata=stranger.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_requests_in_flight_are_each_answered_by_request_id(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    in_flight = RATE_LIMIT_BURST // 2 - 5  # places and cancels: inside the burst
    cancels: dict[int, asyncio.Future] = {}
    places = {
        index: session.send(
            place=place_request(symbol, "BUY", 1, 10.0 + index * 0.01, client_order_id=f"n{index}")
        )
        for index in range(in_flight)
    }
    for index, answer in places.items():
        order = (await asyncio.wait_for(answer, ANSWER_TIMEOUT)).order
        assert (order.client_order_id, order.price) == (
            f"n{index}",
            pytest.approx(10.0 + index * 0.01),
        )
        cancels[index] = session.send(cancel=orders_pb2.CancelOrderRequest(order_id=order.order_id))
    for index, answer in cancels.items():
        cancelled = (await asyncio.wait_for(answer, ANSWER_TIMEOUT)).order
        assert (cancelled.client_order_id, cancelled.status) == (f"n{index}", types_pb2.CANCELLED)
    assert await session.close() == grpc.StatusCode.OK


async def test_the_open_order_cap_rejects_the_next_order_as_unary_does(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    resting = await asyncio.gather(
        *(session.place(symbol, "BUY", 1, 10.0 + index * 0.01) for index in range(MAX_OPEN_ORDERS))
    )
    assert {answer.order.status for answer in resting} == {types_pb2.NEW}
    refused = (await session.place(symbol, "BUY", 1, 9.0)).order
    assert (refused.status, refused.reject_reason) == (types_pb2.REJECTED, "OPEN_ORDER_LIMIT")
    assert (await trader.place(symbol, "BUY", 1, 9.0)).reject_reason == "OPEN_ORDER_LIMIT"
    await session.close()


async def test_throttled_messages_are_refused_and_the_session_stays_open(
    exchange: Exchange,
) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    sent = [
        session.send(place=place_request(symbol, "BUY", 1, 10.0, tif="IOC"))
        for _ in range(RATE_LIMIT_BURST + 10)
    ]
    answers = [await asyncio.wait_for(answer, ANSWER_TIMEOUT) for answer in sent]
    throttled = [answer.error for answer in answers if answer.WhichOneof("response") == "error"]
    assert len(throttled) >= 10 - 2  # tokens refill at 20/s while the burst is sent
    assert {error.code_name for error in throttled} == {"RESOURCE_EXHAUSTED"}
    assert f"rate limit of {RATE_LIMIT_PER_SECOND:g} requests/s" in throttled[0].message
    assert "retry after 1s" in throttled[0].message

    deadline = time.monotonic() + 3
    while True:  # a token comes back every 1/RATE_LIMIT_PER_SECOND s: the same stream goes on
        answer = await session.place(symbol, "BUY", 1, 10.0, tif="IOC")
        if answer.WhichOneof("response") == "order" or time.monotonic() > deadline:
            break
        await asyncio.sleep(1 / RATE_LIMIT_PER_SECOND)
    assert answer.order.status == types_pb2.EXPIRED
    assert await session.close() == grpc.StatusCode.OK


async def test_a_session_ends_cleanly_when_the_client_half_closes(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    session = Session(trader)
    in_flight = session.send(
        place=place_request(symbol, "BUY", 1, 10.0, client_order_id=uuid.uuid4().hex)
    )
    assert await session.close() == grpc.StatusCode.OK
    assert in_flight.result().order.status == types_pb2.NEW


async def test_cancel_on_disconnect_cancels_the_open_orders_of_a_lost_session_only(
    exchange: Exchange,
) -> None:
    symbol = await exchange.add_symbol()
    opted_in = await exchange.participant()
    opted_in.metadata = (*opted_in.metadata, ("x-cancel-on-disconnect", "true"))
    lost = Session(opted_in)
    resting = (await lost.place(symbol, "BUY", 5, 50.0)).order
    lost.call.cancel()  # the bot vanishes without closing its session

    async def cancelled() -> bool:
        return (await opted_in.get(resting.order_id)).status == types_pb2.CANCELLED

    await eventually(cancelled, what="the lost session's order cancelled")

    # A session closed by its client keeps its orders, and so does one without the option.
    closed = Session(opted_in)
    kept = (await closed.place(symbol, "BUY", 5, 49.0)).order
    assert await closed.close() == grpc.StatusCode.OK
    plain = await exchange.participant()
    without = Session(plain)
    also_kept = (await without.place(symbol, "BUY", 5, 48.0)).order
    without.call.cancel()
    await asyncio.sleep(1.0)
    assert (await opted_in.get(kept.order_id)).status == types_pb2.NEW
    assert (await plain.get(also_kept.order_id)).status == types_pb2.NEW


async def test_cancel_on_disconnect_takes_true_or_false(exchange: Exchange) -> None:
    trader = await exchange.participant()
    call = trader.orders.OrderSession(
        metadata=(*trader.metadata, ("x-cancel-on-disconnect", "yes"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-cancel-on-disconnect must be true or false, got 'yes'" in refused.value.details()
