"""The order path through real services: gateway -> Redis stream -> engine -> Kafka -> store."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2
from exchange.v1 import accounts_pb2, market_pb2, orders_pb2, streams_pb2, types_pb2
from mockex import names
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, MAX_OPEN_ORDERS, RATE_LIMIT_BURST
from tests.integration.exchange_client import Exchange, Participant, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def exchange(exchange_stack: ExchangeStack):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}")
    yield Exchange(channel, ADMIN_KEY)
    await channel.close()


async def read_log(stack: ExchangeStack) -> list[engine_pb2.EngineBatch]:
    """Every EngineBatch in the engine's Kafka log."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    partition = TopicPartition(stack.events_topic, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        consumer.seek(partition, 0)
        batches = []
        while len(batches) < end:
            records = await consumer.getmany(partition, timeout_ms=1000)
            batches.extend(
                engine_pb2.EngineBatch.FromString(record.value)
                for record in records.get(partition, ())
            )
        return batches
    finally:
        await consumer.stop()


async def test_place_and_fill_round_trip(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    seller = await exchange.participant(positions={symbol: 100})
    buyer = await exchange.participant(cash=10_000)

    resting = await seller.place(symbol, "SELL", 10, 101.25)
    assert resting.status == types_pb2.NEW
    assert resting.remaining_quantity == 10
    assert resting.order_id

    taker = await buyer.place(symbol, "BUY", 4, 102.00)
    assert taker.status == types_pb2.FILLED
    assert taker.avg_fill_price == 101.25
    assert [(fill.price, fill.quantity) for fill in taker.fills] == [(101.25, 4)]

    seen_by_seller = await seller.get(resting.order_id)
    assert seen_by_seller.status == types_pb2.PARTIALLY_FILLED
    assert seen_by_seller.filled_quantity == 4

    account = await buyer.account()
    assert account.cash == pytest.approx(10_000 - 405.0)
    assert account.reserved_cash == 0
    assert [(p.symbol, p.quantity) for p in account.positions] == [(symbol, 4)]

    book = await buyer.order_book(symbol)
    assert [(level.price, level.quantity, level.orders) for level in book.asks] == [(101.25, 6, 1)]


async def test_cancel_round_trip_and_preconditions(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    owner = await exchange.participant()
    other = await exchange.participant()
    order = await owner.place(symbol, "BUY", 5, 50.0)

    with pytest.raises(grpc.aio.AioRpcError) as not_yours:
        await other.cancel(order.order_id)
    assert not_yours.value.code() == grpc.StatusCode.NOT_FOUND

    cancelled = await owner.cancel(order.order_id)
    assert cancelled.status == types_pb2.CANCELLED
    assert cancelled.status_reason == "CANCELLED_BY_OWNER"
    assert (await owner.account()).reserved_cash == 0

    with pytest.raises(grpc.aio.AioRpcError) as again:
        await owner.cancel(order.order_id)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_reads_reflect_every_answer_at_once(exchange: Exchange) -> None:
    """Read your writes: right after an answer, the history says the same (no polling)."""
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    for _ in range(6):  # 30 calls: inside the module stack's rate limit burst (40)
        order = await trader.place(symbol, "BUY", 1, 10.0)
        listed = await trader.orders.ListOrders(
            orders_pb2.ListOrdersRequest(status="open"), metadata=trader.metadata, timeout=15
        )
        assert order.order_id in [o.order_id for o in listed.orders]
        cancelled = await trader.cancel(order.order_id)
        assert cancelled.status == types_pb2.CANCELLED
        still_open = await trader.orders.ListOrders(
            orders_pb2.ListOrdersRequest(status="open"), metadata=trader.metadata, timeout=15
        )
        assert order.order_id not in [o.order_id for o in still_open.orders]
        assert (await trader.get(order.order_id)).status == types_pb2.CANCELLED


async def test_other_users_order_is_not_found(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    owner = await exchange.participant()
    other = await exchange.participant()
    order = await owner.place(symbol, "BUY", 1, 10.0)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await other.get(order.order_id)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_business_rule_rejection_has_id_and_reason(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    poor = await exchange.participant(cash=10)
    order = await poor.place(symbol, "BUY", 100, 5.0)
    assert order.order_id
    assert order.status == types_pb2.REJECTED
    assert order.reject_reason == "INSUFFICIENT_CASH"


async def test_client_order_id_returns_the_first_order(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    first = await trader.place(symbol, "BUY", 3, 20.0, client_order_id="retry-1")
    second = await trader.place(symbol, "BUY", 3, 20.0, client_order_id="retry-1")
    assert second.order_id == first.order_id
    book = await trader.order_book(symbol)
    assert [(level.quantity, level.orders) for level in book.bids] == [(3, 1)]


async def test_store_answers_history_matching_the_kafka_log(
    exchange: Exchange, exchange_stack: ExchangeStack
) -> None:
    symbol = await exchange.add_symbol()
    seller = await exchange.participant(positions={symbol: 50})
    buyer = await exchange.participant()
    await seller.place(symbol, "SELL", 10, 10.0)
    await seller.place(symbol, "SELL", 10, 10.5)
    await buyer.place(symbol, "BUY", 15, 11.0)
    open_order = await buyer.place(symbol, "BUY", 2, 9.0)

    async def trades_listed():
        answer = await buyer.trades.ListTrades(
            market_pb2.ListTradesRequest(symbol=symbol, limit=10), timeout=5
        )
        return answer.trades if len(answer.trades) == 2 else None

    trades = await eventually(trades_listed, what="two trades in the store")
    logged = [
        (event.trade_executed.trade_id, event.trade_executed.quantity)
        for batch in await read_log(exchange_stack)
        for event in batch.events
        if event.symbol == symbol and event.WhichOneof("event") == "trade_executed"
    ]
    assert [(trade.trade_id, trade.quantity) for trade in reversed(trades)] == logged
    assert [trade.price for trade in trades] == [10.5, 10.0]

    async def open_orders_listed():
        answer = await buyer.orders.ListOrders(
            orders_pb2.ListOrdersRequest(status="open"), metadata=buyer.metadata, timeout=5
        )
        return answer.orders if answer.orders else None

    listed = await eventually(open_orders_listed, what="the buyer's open order in the store")
    assert [order.order_id for order in listed] == [open_order.order_id]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"symbol": ""}, "symbol"),
        ({"symbol": "lower"}, "symbol"),
        ({"symbol": "NOPE"}, "symbol"),
        ({"side": 0}, "side"),
        ({"type": 0}, "type"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": 1_000_001}, "quantity"),
        ({"price": 0.0}, "price"),
        ({"price": -1.0}, "price"),
        ({"price": float("nan")}, "price"),
        ({"price": float("inf")}, "price"),
        ({"price": 10.001}, "price"),
        ({"price": 1e12}, "price"),
        ({"type": types_pb2.MARKET, "time_in_force": types_pb2.GFD}, "timeInForce"),
        ({"side": 99}, "side must be BUY or SELL, got 99"),
        ({"time_in_force": 99}, "timeInForce must be GFD, IOC, FOK or GTC, got 99"),
        ({"symbol": "NL\n"}, "symbol"),
        ({"client_order_id": "x" * 65}, "clientOrderId"),
    ],
)
async def test_every_invalid_field_is_invalid_argument_and_leaves_no_trace(
    exchange: Exchange, exchange_stack: ExchangeStack, fields: dict, named: str
) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    request = orders_pb2.PlaceOrderRequest(
        symbol=symbol, side=types_pb2.BUY, type=types_pb2.LIMIT, quantity=10, price=10.0
    )
    for field, value in fields.items():
        setattr(request, field, value)
    log_before = len(await read_log(exchange_stack))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await trader.orders.PlaceOrder(request, metadata=trader.metadata, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in error.value.details()
    assert len(await read_log(exchange_stack)) == log_before
    assert not (await trader.order_book(symbol)).bids
    assert (await trader.account()).reserved_cash == 0


async def test_user_id_of_another_user_is_permission_denied(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await trader.place(symbol, "BUY", 1, 10.0, user_id="somebody-else")
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_missing_or_wrong_key_is_unauthenticated(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    trader.metadata = (("x-api-key", "wrong"),)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await trader.place(symbol, "BUY", 1, 10.0)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_calls_need_the_admin_role(exchange: Exchange) -> None:
    trader = await exchange.participant()
    exchange.admin_metadata = trader.metadata
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await exchange.add_symbol()
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_market_data_stream_snapshot_then_contiguous_sequences(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    seller = await exchange.participant(positions={symbol: 100})
    buyer = await exchange.participant()
    await seller.place(symbol, "SELL", 5, 20.0)

    call = buyer.streams.StreamMarketData(
        streams_pb2.StreamMarketDataRequest(symbols=[symbol]), timeout=30
    )
    first = await call.read()
    assert first.book.snapshot
    assert [(level.price, level.quantity) for level in first.book.asks] == [(20.0, 5)]
    await buyer.place(symbol, "BUY", 2, 20.0)

    sequences = [first.book.sequence]
    kinds = []
    while "quote" not in kinds:
        message = await asyncio.wait_for(call.read(), 10)
        kind = message.WhichOneof("payload")
        kinds.append(kind)
        sequences.append(getattr(message, kind).sequence)
    call.cancel()
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert "trade" in kinds and "book" in kinds


async def test_order_updates_stream_only_the_callers_orders(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    watcher = await exchange.participant()
    other = await exchange.participant()
    call = watcher.streams.StreamOrderUpdates(
        streams_pb2.StreamOrderUpdatesRequest(), metadata=watcher.metadata, timeout=30
    )
    await other.place(symbol, "BUY", 1, 10.0)
    mine = await watcher.place(symbol, "BUY", 1, 11.0)
    message = await asyncio.wait_for(call.read(), 10)
    call.cancel()
    assert message.order.order_id == mine.order_id
    assert message.order.user_id == watcher.user_id


async def test_health_reflection_and_exchange_health(exchange_stack: ExchangeStack) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        from exchange.v1 import accounts_pb2_grpc

        ours = await accounts_pb2_grpc.HealthServiceStub(channel).GetHealth(
            accounts_pb2.GetHealthRequest(), timeout=5
        )
        assert ours.status == "SERVING"

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            services = {service.name for service in response.list_services_response.service}
            break
        assert "exchange.v1.OrderService" in services
        assert "exchange.v1.StreamService" in services
        assert "grpc.health.v1.Health" in services


async def test_rate_limit_per_key_answers_resource_exhausted_with_retry_after(
    exchange: Exchange,
) -> None:
    trader = await exchange.participant()
    other = await exchange.participant()
    codes = []
    retry_after = None
    for _ in range(RATE_LIMIT_BURST + 20):
        try:
            await trader.account()
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
            retry_after = dict(exc.trailing_metadata() or ()).get("retry-after")
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert codes[:RATE_LIMIT_BURST] == [grpc.StatusCode.OK] * RATE_LIMIT_BURST
    assert retry_after is not None and int(retry_after) >= 1
    await other.account()  # another key is not affected


async def test_open_order_cap_per_user_rejects_the_next_order(exchange: Exchange) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    for index in range(MAX_OPEN_ORDERS):
        resting = await trader.place(symbol, "BUY", 1, 10.0 + index * 0.01)
        assert resting.status == types_pb2.NEW
    refused = await trader.place(symbol, "BUY", 1, 9.0)
    assert refused.status == types_pb2.REJECTED
    assert refused.reject_reason == "OPEN_ORDER_LIMIT"
    await trader.cancel(resting.order_id)
    assert (await trader.place(symbol, "BUY", 1, 9.0)).status == types_pb2.NEW


async def test_command_stream_holds_only_the_backlog(
    exchange: Exchange, exchange_stack: ExchangeStack
) -> None:
    """The engine trims what it has taken, so the gateway's overload check reads the backlog."""
    symbol = await exchange.add_symbol()
    admin = Participant(exchange.channel, "admin", ADMIN_KEY)  # not rate-limited
    await asyncio.gather(*(admin.place(symbol, "BUY", 1, 10.0) for _ in range(300)))
    redis = Redis.from_url(exchange_stack.redis_url)
    try:
        assert await redis.xlen(names.COMMANDS_STREAM) < 150
    finally:
        await redis.aclose()


async def test_a_finished_order_leaves_the_cache_soon_and_is_still_found(
    exchange: Exchange, exchange_stack: ExchangeStack
) -> None:
    """Open orders stay cached for a day; finished ones for minutes (the cache would grow with
    every order), after which the gateway answers them from the store."""
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    resting = await trader.place(symbol, "BUY", 1, 10.0)
    expired = await trader.place(symbol, "BUY", 1, 10.0, tif="IOC")
    assert (resting.status, expired.status) == (types_pb2.NEW, types_pb2.EXPIRED)
    redis = Redis.from_url(exchange_stack.redis_url)
    try:
        assert await redis.ttl(names.order_key(resting.order_id)) > 3600
        assert (
            0
            < await redis.ttl(names.order_key(expired.order_id))
            <= (names.FINISHED_ORDER_TTL_SECONDS)
        )
        await redis.delete(names.order_key(expired.order_id))  # as when it has expired
    finally:
        await redis.aclose()
    assert (await trader.get(expired.order_id)).status == types_pb2.EXPIRED


async def test_trades_of_a_fresh_symbol_are_empty_and_of_an_unlisted_one_not_found(
    exchange: Exchange,
) -> None:
    symbol = await exchange.add_symbol()
    trader = await exchange.participant()
    fresh = await trader.trades.ListTrades(market_pb2.ListTradesRequest(symbol=symbol), timeout=5)
    assert list(fresh.trades) == []
    with pytest.raises(grpc.aio.AioRpcError) as unlisted:
        await trader.trades.ListTrades(market_pb2.ListTradesRequest(symbol="NOPE"), timeout=5)
    assert unlisted.value.code() == grpc.StatusCode.NOT_FOUND
