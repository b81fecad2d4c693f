"""StreamService against a real Redis: engine batches are PUBLISHed by hand, as the engine does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, streams_pb2_grpc, types_pb2
from mockex import names, processes
from stream_svc.app import StreamApp
from stream_svc.feed import publish_exchange_event
from tests.integration.stream_feed import (
    KEYS,
    NOW,
    QUEUE_SIZE,
    event,
    level,
    order,
    publish,
    start_stream_app,
    until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def stream_app(redis_url: str, redis: Redis) -> AsyncIterator[StreamApp]:
    app = await start_stream_app(redis_url, redis)
    yield app
    await app.stop(grace=0)


@pytest.fixture
async def channel(stream_app: StreamApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stream_app.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> streams_pb2_grpc.StreamServiceStub:
    return streams_pb2_grpc.StreamServiceStub(channel)


async def test_market_data_sends_the_snapshot_then_the_deltas_after_it(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    book = types_pb2.OrderBook(
        symbol="ACME", sequence=5, bids=[types_pb2.PriceLevel(price=100.0, quantity=5, orders=1)]
    )
    await redis.set(names.book_key("ACME"), book.SerializeToString())
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=["ACME", "GLOBX"]))

    acme, globx = (await call.read()).book, (await call.read()).book
    assert (acme.symbol, acme.snapshot, acme.sequence) == ("ACME", True, 5)
    assert list(acme.bids) == list(book.bids)
    assert (globx.symbol, globx.snapshot, globx.sequence, len(globx.bids)) == ("GLOBX", True, 0, 0)

    # ACME 4 and 5 are in the snapshot already; the engine's order events (6, 7) are private.
    await publish(redis, level("ACME", 4), level("ACME", 5))
    await publish(
        redis,
        event(
            "ACME",
            6,
            order_accepted=engine_pb2.OrderAccepted(order=order("alice", "o-1", types_pb2.NEW)),
        ),
        event(
            "ACME",
            7,
            trade_executed=engine_pb2.TradeExecuted(
                trade_id="t-1", price_ticks=10000, quantity=5, aggressor_side=types_pb2.SELL
            ),
        ),
        level("ACME", 8, quantity=0),
        level("GLOBX", 1, side=types_pb2.SELL, price_ticks=2001),
        event("ACME", 9, quote_changed=engine_pb2.QuoteChanged(last_ticks=10000, volume=5)),
    )

    received = [await call.read() for _ in range(4)]

    kinds = [(r.WhichOneof("payload"), getattr(r, r.WhichOneof("payload"))) for r in received]
    assert [(kind, message.sequence) for kind, message in kinds] == [
        ("trade", 7),
        ("book", 8),
        ("book", 1),
        ("quote", 9),
    ]
    assert received[0].trade.price == 100.0 and received[0].trade.symbol == "ACME"
    assert list(received[1].book.bids) == [types_pb2.PriceLevel(price=100.0, quantity=0)]
    assert not received[1].book.snapshot
    assert received[2].book.symbol == "GLOBX" and received[2].book.asks[0].price == 100.05
    assert received[3].quote.ltp == 100.0 and received[3].quote.volume == 5

    call.cancel()
    await until(lambda: stream_app.hub.subscriber_count == 0)


async def test_market_data_is_unavailable_while_the_engine_rebuilds_the_books(
    stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    """Redis came back empty: no book yet and no marker. An empty book at sequence 0 would be
    false market data, so the answer is UNAVAILABLE until the engine has rewritten it."""
    await redis.delete(names.VIEWS_KEY)
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=["ACME"]))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call.read()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "rebuilding" in error.value.details()

    unknown = stub.StreamOrderUpdates(
        streams_pb2.StreamOrderUpdatesRequest(), metadata=(("x-api-key", "mx_not_yet_known"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await unknown.read()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(("symbols", "named"), [([], "symbols"), (["ACME", "NOPE"], "NOPE")])
async def test_market_data_refuses_missing_or_unknown_symbols(
    stub: streams_pb2_grpc.StreamServiceStub, symbols: list[str], named: str
) -> None:
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=symbols))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call.read()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "symbols" in error.value.details() and named in error.value.details()


async def test_market_data_finds_a_symbol_listed_after_start(
    stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    info = types_pb2.SymbolInfo(symbol="NEWCO", tick_size=0.25, lot_size=1)
    await redis.hset(names.SYMBOLS_KEY, "NEWCO", info.SerializeToString())
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=["NEWCO"]))

    snapshot = (await call.read()).book
    await publish(redis, level("NEWCO", 1, price_ticks=3))

    assert (snapshot.symbol, snapshot.snapshot) == ("NEWCO", True)
    assert (await call.read()).book.bids[0].price == 0.75
    call.cancel()


async def test_order_updates_reach_their_owner_only(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    request = streams_pb2.StreamOrderUpdatesRequest()
    calls = {
        user: stub.StreamOrderUpdates(request, metadata=(("x-api-key", key),))
        for user, key in KEYS.items()
    }
    await until(lambda: stream_app.hub.subscriber_count == 2)

    await publish(
        redis,
        event(
            "ACME",
            1,
            order_accepted=engine_pb2.OrderAccepted(order=order("bob", "b-1", types_pb2.NEW)),
        ),
        event(
            "ACME",
            2,
            order_accepted=engine_pb2.OrderAccepted(order=order("alice", "a-1", types_pb2.NEW)),
        ),
    )
    await publish(
        redis,
        event(
            "ACME",
            3,
            order_filled=engine_pb2.OrderFilled(
                order=order("bob", "b-1", types_pb2.FILLED, 10),
                trade_id="t-1",
                price_ticks=10000,
                quantity=10,
            ),
        ),
        event(
            "ACME",
            4,
            order_filled=engine_pb2.OrderFilled(
                order=order("alice", "a-1", types_pb2.FILLED, 10),
                trade_id="t-1",
                price_ticks=10000,
                quantity=10,
            ),
        ),
    )
    await publish(
        redis,
        event(
            "ACME",
            5,
            order_cancelled=engine_pb2.OrderCancelled(
                order=order("bob", "b-2", types_pb2.CANCELLED)
            ),
        ),
    )
    await publish(
        redis,
        event(
            "ACME",
            6,
            order_expired=engine_pb2.OrderExpired(order=order("alice", "a-2", types_pb2.EXPIRED)),
        ),
    )

    for user, call in calls.items():
        received = [await call.read() for _ in range(4)]
        seen = [(r.WhichOneof("payload"), getattr(r, r.WhichOneof("payload"))) for r in received]
        assert [(kind, message.order_id) for kind, message in seen] == [
            ("order", f"{user[0]}-1"),
            ("fill", f"{user[0]}-1"),
            ("order", f"{user[0]}-1"),
            ("order", f"{user[0]}-2"),
        ]
        assert received[1].fill.price == 100.0 and received[1].fill.quantity == 10
        assert received[2].order.status == types_pb2.FILLED
        assert all(r.order.user_id == user for r in received if r.HasField("order"))
        call.cancel()


@pytest.mark.parametrize("metadata", [(), (("x-api-key", "mx_wrong"),)])
async def test_order_updates_need_a_valid_api_key(
    stub: streams_pb2_grpc.StreamServiceStub, metadata: tuple
) -> None:
    call = stub.StreamOrderUpdates(streams_pb2.StreamOrderUpdatesRequest(), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call.read()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_exchange_events_announce_what_changed_the_market(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    call = stub.StreamExchangeEvents(streams_pb2.StreamExchangeEventsRequest())
    await until(lambda: stream_app.hub.subscriber_count == 1)

    def state(symbol: str, sequence: int, status: int) -> engine_pb2.EngineEvent:
        return event(
            symbol, sequence, market_state_changed=engine_pb2.MarketStateChanged(status=status)
        )

    def exchange_wide(sequence: int, symbol: str = "", **payload) -> engine_pb2.EngineEvent:
        return engine_pb2.EngineEvent(
            symbol=symbol, exchange_sequence=sequence, timestamp_ns=NOW, **payload
        )

    await publish(
        redis,
        exchange_wide(1, trading_day_opened=engine_pb2.TradingDayOpened()),
        state("ACME", 1, types_pb2.OPEN),
        state("GLOBX", 1, types_pb2.OPEN),
    )
    await publish(redis)  # a command that changed nothing (opening an open market): no events
    await publish(
        redis,
        state("ACME", 2, types_pb2.HALTED),
        exchange_wide(2, "ACME", trading_halted=engine_pb2.TradingHalted(symbol="ACME")),
    )
    await publish(
        redis,
        state("ACME", 3, types_pb2.OPEN),
        exchange_wide(3, trading_resumed=engine_pb2.TradingResumed()),
    )
    await publish(
        redis,
        engine_pb2.EngineEvent(
            symbol="NEWCO",
            sequence=1,
            exchange_sequence=4,
            timestamp_ns=NOW,
            symbol_added=engine_pb2.SymbolAdded(tick_size="0.05"),
        ),
    )
    await publish(
        redis,
        state("ACME", 4, types_pb2.CLOSED),
        state("GLOBX", 2, types_pb2.CLOSED),
        exchange_wide(5, trading_day_closed=engine_pb2.TradingDayClosed()),
    )
    await publish_exchange_event(
        redis,
        streams_pb2.ExchangeEvent(
            kind=streams_pb2.NEWS, symbol="ACME", message="ACME beats estimates"
        ),
    )

    received = [(await call.read()).event for _ in range(6)]

    assert [(e.kind, e.symbol) for e in received] == [
        (streams_pb2.MARKET_OPENED, ""),
        (streams_pb2.TRADING_HALTED, "ACME"),
        (streams_pb2.TRADING_RESUMED, ""),
        (streams_pb2.SYMBOL_ADDED, "NEWCO"),
        (streams_pb2.MARKET_CLOSED_FOR_DAY, ""),
        (streams_pb2.NEWS, "ACME"),
    ]
    assert all(e.message for e in received)
    assert [e.sequence for e in received[:5]] == [1, 2, 3, 4, 5]
    assert received[0].timestamp.ToNanoseconds() == NOW
    call.cancel()


async def test_a_slow_consumer_is_cut_off_while_a_fast_one_gets_everything(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    request = streams_pb2.StreamMarketDataRequest(symbols=["ACME"])
    # Without BDP probing the client's HTTP/2 window stays at 64 KiB, so a client that does not
    # read stops the server's writes soon and the hub's queue for it fills up.
    slow_channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{stream_app.port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    slow = streams_pb2_grpc.StreamServiceStub(slow_channel).StreamMarketData(request)
    fast = stub.StreamMarketData(request)
    assert (await slow.read()).book.snapshot and (await fast.read()).book.snapshot

    fast_sequences: list[int] = []

    async def read_fast() -> None:
        while True:
            fast_sequences.append((await fast.read()).book.sequence)

    def fast_has(count: int) -> Callable[[], bool]:
        return lambda: len(fast_sequences) >= count

    reader = asyncio.create_task(read_fast())
    events_per_batch, sequence, batches_after_cut = 50, 0, 0
    while batches_after_cut < 3 and sequence < 1000 * events_per_batch:
        if stream_app.hub.subscriber_count == 1:
            batches_after_cut += 1
        await publish(
            redis,
            *(
                level("ACME", sequence + i + 1, price_ticks=10000 + i)
                for i in range(events_per_batch)
            ),
        )
        sequence += events_per_batch
        # The fast client reads as it goes: never more than a couple of batches behind.
        await until(fast_has(sequence - 2 * events_per_batch))
    assert batches_after_cut == 3, "the slow consumer was never cut off"

    await until(fast_has(sequence))
    reader.cancel()
    assert fast_sequences == list(range(1, sequence + 1))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async with asyncio.timeout(10):
            while True:
                await slow.read()
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell behind" in error.value.details()
    fast.cancel()
    await slow_channel.close()


async def test_the_queue_counts_batches_so_a_burst_that_fits_arrives_whole(
    stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    """A burst reaches every queue before any writer runs (the feed reads buffered messages
    back to back): the queue must hold it, however many events each batch carries."""
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=["ACME"]))
    assert (await call.read()).book.snapshot
    events_per_batch = 50
    total = QUEUE_SIZE * events_per_batch

    async with redis.pipeline(transaction=False) as pipeline:
        for first in range(1, total + 1, events_per_batch):
            events = [level("ACME", first + i) for i in range(events_per_batch)]
            pipeline.publish(
                names.EVENTS_CHANNEL, engine_pb2.EngineBatch(events=events).SerializeToString()
            )
        await pipeline.execute()

    assert [(await call.read()).book.sequence for _ in range(total)] == list(range(1, total + 1))
    call.cancel()


async def test_a_lost_feed_resends_market_snapshots_and_the_stream_goes_on(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    """What was published while the feed reconnected is lost: the snapshot replaces it."""
    call = stub.StreamMarketData(streams_pb2.StreamMarketDataRequest(symbols=["ACME"]))
    assert (await call.read()).book.snapshot
    book = types_pb2.OrderBook(
        symbol="ACME", sequence=7, bids=[types_pb2.PriceLevel(price=100.0, quantity=3, orders=1)]
    )
    await redis.set(names.book_key("ACME"), book.SerializeToString())

    await redis.client_kill_filter(_type="pubsub")

    async with asyncio.timeout(10):
        resent = (await call.read()).book
    assert (resent.snapshot, resent.sequence, resent.bids[0].quantity) == (True, 7, 3)
    await publish(redis, level("ACME", 8))
    async with asyncio.timeout(10):
        assert (await call.read()).book.sequence == 8
    call.cancel()


async def test_a_lost_feed_closes_exchange_event_streams_and_the_feed_comes_back(
    stream_app: StreamApp, stub: streams_pb2_grpc.StreamServiceStub, redis: Redis
) -> None:
    """Exchange events have no snapshot to catch up from: clients must subscribe again."""
    request = streams_pb2.StreamExchangeEventsRequest()
    call = stub.StreamExchangeEvents(request)
    await until(lambda: stream_app.hub.subscriber_count == 1)

    await redis.client_kill_filter(_type="pubsub")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        async with asyncio.timeout(10):
            await call.read()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    news = streams_pb2.ExchangeEvent(kind=streams_pb2.NEWS, message="back")
    async with asyncio.timeout(10):
        while True:  # a stream opened while the feed is still reconnecting is closed too
            call = stub.StreamExchangeEvents(request)
            await until(lambda: stream_app.hub.subscriber_count == 1)
            await publish_exchange_event(redis, news)
            try:
                assert (await call.read()).event == news
                break
            except grpc.aio.AioRpcError as retry:
                assert retry.code() == grpc.StatusCode.UNAVAILABLE
    call.cancel()


async def test_health_and_reflection_answer(channel: grpc.aio.Channel) -> None:
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    services = {
        service.name
        async for answer in reflection
        for service in answer.list_services_response.service
    }
    assert "exchange.v1.StreamService" in services


def test_the_process_serves_until_sigterm(redis_url: str, tmp_path: Path) -> None:
    port, ws_port = processes.free_port(), processes.free_port()
    env = {
        "MOCKEX_REDIS_URL": redis_url,
        "MOCKEX_STREAM_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "MOCKEX_STREAM_WS_ADDRESS": f"127.0.0.1:{ws_port}",
    }
    service = processes.python_service("stream_svc", "stream_svc", env, tmp_path)
    try:
        service.wait_for_port(port, 30)
    finally:
        service.stop()
    assert service.process is not None and service.process.returncode == 0, service.tail()
    assert f"stream_svc serving grpc=127.0.0.1:{port} ws=127.0.0.1:{ws_port}" in service.tail()
