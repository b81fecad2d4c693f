"""Amending an order on the real stack (docs/amend.md): over REST through Envoy, over gRPC and in
an order session, with the same answers, the same errors, the order update on the stream, the
store's record of the amended order, and an engine replayed from the log ending with the same
book."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis

from exchange.v1 import orders_pb2, streams_pb2, types_pb2
from mockex import names
from mockex.stack import ExchangeStack, wait_serving
from tests.integration.conftest import ADMIN_KEY
from tests.integration.exchange_client import Exchange, Participant
from tests.integration.test_log_truth import copy_log, engine_on, engine_port
from tests.integration.test_order_path import read_log
from tests.integration.test_order_session import Session
from tests.integration.test_rest_edge import Edge
from tests.integration.test_rest_edge import eventually as until

pytestmark = pytest.mark.integration


@pytest.fixture
async def exchange(exchange_stack: ExchangeStack):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}")
    yield Exchange(channel, ADMIN_KEY)
    await channel.close()


@pytest.fixture(scope="module")
def rest(exchange_stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")


def shape(order: types_pb2.Order) -> tuple:
    """What an amend decides, as REST's JSON names it."""
    return (
        order.price,
        order.quantity,
        order.filled_quantity,
        order.remaining_quantity,
        types_pb2.OrderStatus.Name(order.status),
        len(order.fills),
    )


def rest_shape(order: dict) -> tuple:
    return (
        order["price"],
        order["quantity"],
        order["filledQuantity"],
        order["remainingQuantity"],
        order["status"],
        len(order["fills"]),
    )


async def amend(trader: Participant, order_id: str, **change) -> types_pb2.Order:
    answer = await trader.orders.AmendOrder(
        orders_pb2.AmendOrderRequest(order_id=order_id, **change),
        metadata=trader.metadata,
        timeout=15,
    )
    return answer.order


def order_updates(trader: Participant) -> grpc.aio.UnaryStreamCall:
    """The trader's order updates. Subscribed long before the amend that the test waits for
    (a place through the engine comes between), as test_order_path's stream test relies on."""
    return trader.streams.StreamOrderUpdates(
        streams_pb2.StreamOrderUpdatesRequest(), metadata=trader.metadata, timeout=60
    )


async def update_of(call: grpc.aio.UnaryStreamCall, order_id: str, quantity: int):
    """The first order update of `order_id` at `quantity`."""
    while True:
        message = await asyncio.wait_for(call.read(), 15)
        order = message.order
        is_order = message.WhichOneof("payload") == "order"
        if is_order and (order.order_id, order.quantity) == (order_id, quantity):
            return order


async def test_grpc_rest_and_session_amend_alike_and_stream_the_update(
    exchange: Exchange, rest: Edge
) -> None:
    symbol = await exchange.add_symbol()
    answers: dict[str, list[tuple]] = {}
    for surface in ("grpc", "rest", "session"):
        trader = await exchange.participant(positions={symbol: 100})
        updates = order_updates(trader)
        placed = await trader.place(symbol, "SELL", 10, 101.0)
        if surface == "grpc":
            smaller = await amend(trader, placed.order_id, quantity=6)
            moved = await amend(trader, placed.order_id, price=100.5)
        elif surface == "rest":
            body = {"orderId": placed.order_id, "quantity": 6}
            smaller = rest.ok("POST", "/order/amend", body, trader.api_key)
            body = {"orderId": placed.order_id, "price": 100.5}
            moved = rest.ok("POST", "/order/amend", body, trader.api_key)
        else:
            session = Session(trader)
            change = orders_pb2.AmendOrderRequest(order_id=placed.order_id, quantity=6)
            smaller = (await session.request(amend=change)).order
            change = orders_pb2.AmendOrderRequest(order_id=placed.order_id, price=100.5)
            moved = (await session.request(amend=change)).order
            assert await session.close() == grpc.StatusCode.OK
        to_shape = rest_shape if surface == "rest" else shape
        answers[surface] = [to_shape(smaller), to_shape(moved)]
        streamed = await update_of(updates, placed.order_id, 6)
        updates.cancel()
        assert (streamed.quantity, streamed.remaining_quantity, streamed.price) == (6, 6, 101.0)
        latest = await trader.get(placed.order_id)
        assert (latest.order_id, latest.created_at) == (placed.order_id, placed.created_at)
        assert (latest.price, latest.quantity) == (100.5, 6)
    assert answers["grpc"] == [(101.0, 6, 0, 6, "NEW", 0), (100.5, 6, 0, 6, "NEW", 0)]
    assert answers["rest"] == answers["grpc"] == answers["session"]
    book = await trader.order_book(symbol)
    assert [(level.price, level.quantity, level.orders) for level in book.asks] == [(100.5, 18, 3)]


async def test_a_crossing_amend_fills_at_once_and_the_fill_reaches_the_session(
    exchange: Exchange,
) -> None:
    symbol = await exchange.add_symbol()
    seller = await exchange.participant(positions={symbol: 10})
    buyer = await exchange.participant(cash=10_000)
    await seller.place(symbol, "SELL", 5, 101.0)
    session = Session(buyer)
    bid = (await session.place(symbol, "BUY", 8, 99.0)).order
    change = orders_pb2.AmendOrderRequest(order_id=bid.order_id, price=101.0)
    crossed = (await session.request(amend=change)).order
    assert shape(crossed) == (101.0, 8, 5, 3, "PARTIALLY_FILLED", 1)
    fill = await asyncio.wait_for(session.fills.get(), 15)
    assert (fill.order_id, fill.price, fill.quantity) == (bid.order_id, 101.0, 5)
    assert await session.close() == grpc.StatusCode.OK
    account = await buyer.account()
    assert account.reserved_cash == pytest.approx(3 * 101.0)
    book = await buyer.order_book(symbol)
    assert ([(b.price, b.quantity) for b in book.bids], list(book.asks)) == ([(101.0, 3)], [])


async def test_amend_errors_name_the_field_alike_over_rest_and_grpc(
    exchange: Exchange, rest: Edge
) -> None:
    symbol = await exchange.add_symbol(lot_size=5)
    trader = await exchange.participant(cash=2_000, positions={symbol: 100})  # 2,505 after the fill
    other = await exchange.participant(positions={symbol: 100})
    ask = await trader.place(symbol, "SELL", 10, 101.0)
    bid = await trader.place(symbol, "BUY", 10, 99.0)
    await other.place(symbol, "BUY", 5, 101.0)  # half of the ask fills
    cases = [
        ({"orderId": ask.order_id}, 400, "nothing to change"),
        ({"orderId": ask.order_id, "quantity": 10}, 400, "nothing to change"),
        ({"orderId": ask.order_id, "price": 101.005}, 400, "price 101.005 is not a whole number"),
        ({"orderId": ask.order_id, "quantity": 12}, 400, "not a multiple of the lot size 5"),
        ({"orderId": ask.order_id, "quantity": 5}, 400, "above the filledQuantity 5"),
        ({"orderId": ask.order_id, "quantity": -5}, 400, "quantity must be a positive integer"),
        ({"orderId": bid.order_id, "quantity": 30}, 400, "INSUFFICIENT_CASH"),
        ({"orderId": "nope"}, 404, "order 'nope' not found"),
    ]
    for body, status, words in cases:
        answer = rest.call("POST", "/order/amend", body, trader.api_key)
        assert (answer.status, words in answer.body["message"]) == (status, True), answer.body
        change = {key: value for key, value in body.items() if key != "orderId"}
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await amend(trader, body["orderId"], **change)
        assert raised.value.details() == answer.body["message"]
    unknown = rest.call("POST", "/order/amend", {"orderId": ask.order_id, "qty": 5}, trader.api_key)
    assert (unknown.status, 'unknown field "qty"' in str(unknown.body)) == (400, True)
    someone_elses = rest.call("POST", "/order/amend", {"orderId": ask.order_id}, other.api_key)
    assert someone_elses.status == 404
    await trader.cancel(bid.order_id)
    finished = rest.call(
        "POST", "/order/amend", {"orderId": bid.order_id, "quantity": 5}, trader.api_key
    )
    assert finished.status == 400
    assert "already CANCELLED; only open orders can be amended" in finished.body["message"]
    rest.ok("POST", "/admin/market/halt", {"symbol": symbol}, ADMIN_KEY)
    try:
        halted = rest.call(
            "POST", "/order/amend", {"orderId": ask.order_id, "price": 102.0}, trader.api_key
        )
    finally:
        rest.ok("POST", "/admin/market/resume", {"symbol": symbol}, ADMIN_KEY)
    assert halted.status == 400 and halted.body["message"].startswith("SYMBOL_HALTED:")
    latest = await trader.get(ask.order_id)
    assert (latest.price, latest.quantity, latest.remaining_quantity) == (101.0, 10, 5)


async def test_the_store_records_the_amended_order(exchange: Exchange, rest: Edge) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    bid = await trader.place(symbol, "BUY", 10, 50.0)
    await amend(trader, bid.order_id, price=49.5, quantity=7)

    def stored() -> dict | None:
        listed = rest.ok("GET", "/orders?status=open", key=trader.api_key)["orders"]
        return next(
            (o for o in listed if o["orderId"] == bid.order_id and o["quantity"] == 7), None
        )

    order = await asyncio.get_running_loop().run_in_executor(
        None, until, stored, "the store's copy of the amended order"
    )
    assert (order["price"], order["remainingQuantity"], order["status"]) == (49.5, 7, "NEW")


async def test_an_engine_replayed_from_the_log_ends_with_the_same_book(
    exchange: Exchange, exchange_stack: ExchangeStack, tmp_path: Path
) -> None:
    symbol = await exchange.add_symbol()
    first = await exchange.participant(positions={symbol: 100})
    second = await exchange.participant(positions={symbol: 100})
    buyer = await exchange.participant()
    a = await first.place(symbol, "SELL", 10, 101.0)
    b = await second.place(symbol, "SELL", 10, 101.0)
    c = await first.place(symbol, "SELL", 10, 102.0)
    await amend(first, a.order_id, quantity=15)  # behind b now
    await amend(first, c.order_id, quantity=4)  # keeps its place
    await amend(second, b.order_id, price=100.0)  # a new level
    await buyer.place(symbol, "BUY", 12, 101.0)  # b's 10, then 2 of a
    assert (await first.get(a.order_id)).filled_quantity == 2
    live = await buyer.order_book(symbol)

    suffix = await copy_log(exchange_stack, await read_log(exchange_stack))
    engine = engine_on(exchange_stack, suffix, tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, wait_serving, engine, engine_port(engine), 60
        )
        assert "unchecked_older_rules=0" in engine.tail(200)
    finally:
        engine.stop()
    replayed = Redis.from_url(exchange_stack.redis_database_url(3))
    try:
        cached = types_pb2.OrderBook.FromString(await replayed.get(names.book_key(symbol)))
        amended = types_pb2.Order.FromString(await replayed.get(names.order_key(a.order_id)))
    finally:
        await replayed.aclose()
    assert list(cached.asks) == list(live.asks) and list(cached.bids) == list(live.bids)
    assert (amended.quantity, amended.filled_quantity) == (15, 2)


async def test_cancel_all_over_rest_and_grpc_for_one_symbol_or_every_symbol(
    exchange: Exchange, rest: Edge
) -> None:
    """The rest of order entry (issue 10): cancel-all of the caller's own orders only."""
    first, second = await exchange.add_symbol(), await exchange.add_symbol()
    trader = await exchange.participant()
    bystander = await exchange.participant()
    kept = await bystander.place(first, "BUY", 1, 10.0)
    a = await trader.place(first, "BUY", 1, 10.0)
    b = await trader.place(second, "BUY", 1, 10.0)
    c = await trader.place(second, "BUY", 2, 11.0)

    one = rest.ok("POST", "/orders/cancel-all", {"symbol": first}, trader.api_key)["orders"]
    assert [(o["orderId"], o["status"], o["statusReason"]) for o in one] == [
        (a.order_id, "CANCELLED", "CANCELLED_BY_OWNER")
    ]
    every = await trader.orders.CancelAllOrders(
        orders_pb2.CancelAllOrdersRequest(), metadata=trader.metadata, timeout=15
    )
    assert sorted(o.order_id for o in every.orders) == sorted([b.order_id, c.order_id])
    assert {o.status for o in every.orders} == {types_pb2.CANCELLED}
    again = rest.ok("POST", "/orders/cancel-all", {}, trader.api_key)
    assert again["orders"] == []
    unlisted = rest.call("POST", "/orders/cancel-all", {"symbol": "NOPE"}, trader.api_key)
    assert (unlisted.status, unlisted.body["message"]) == (404, "symbol 'NOPE' is not listed")
    assert (await bystander.get(kept.order_id)).status == types_pb2.NEW
