"""The WebSocket channels (SPEC section 4) against a real Redis: engine batches are PUBLISHed by
hand, as the engine does; the last test goes through the real services instead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exchange.internal.v1 import engine_pb2
from exchange.v1 import streams_pb2, types_pb2
from mockex import names, processes
from mockex.private import new_password
from mockex.settings import redis_url_for
from mockex.stack import ExchangeStack
from stream_svc.app import StreamApp
from stream_svc.feed import publish_exchange_event
from stream_svc.websocket import MAX_MESSAGE_BYTES
from tests.integration.conftest import ADMIN_KEY as STACK_ADMIN_KEY
from tests.integration.exchange_client import Exchange
from tests.integration.stream_feed import (
    KEYS,
    NOW,
    event,
    level,
    order,
    publish,
    start_stream_app,
    until,
    write_caches,
)

pytestmark = pytest.mark.integration

QUOTE_FIELDS = {
    "symbol",
    "ltp",
    "lastQuantity",
    "bid",
    "bidSize",
    "ask",
    "askSize",
    "volume",
    "open",
    "high",
    "low",
    "timestamp",
    "sequence",
    "mark",
}
ORDER_FIELDS = {
    "orderId",
    "userId",
    "symbol",
    "side",
    "orderType",
    "timeInForce",
    "price",
    "quantity",
    "filledQuantity",
    "remainingQuantity",
    "avgFillPrice",
    "status",
    "rejectReason",
    "fills",
    "createdAt",
    "updatedAt",
    "clientOrderId",
    "statusReason",
}
"""SPEC's order object, its `type` renamed `orderType` (see docs/websockets.md)."""
TIMESTAMP = "2023-11-14T22:13:20Z"
"""stream_feed.NOW as RFC 3339."""


@pytest.fixture
async def stream_app(redis_url: str, redis: Redis) -> AsyncIterator[StreamApp]:
    app = await start_stream_app(redis_url, redis)
    yield app
    await app.stop(grace=0)


@pytest.fixture
def ws_url(stream_app: StreamApp) -> str:
    return f"ws://127.0.0.1:{stream_app.ws_port}"


async def receive(websocket: ClientConnection, count: int = 1) -> list[dict]:
    async with asyncio.timeout(10):
        return [json.loads(await websocket.recv()) for _ in range(count)]


async def closed(websocket: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes; the code and reason it closed with."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await websocket.recv()
    return websocket.close_code, websocket.close_reason


async def test_market_data_sends_snapshots_then_the_deltas_after_them(
    ws_url: str, redis: Redis
) -> None:
    book = types_pb2.OrderBook(
        symbol="ACME", sequence=5, bids=[types_pb2.PriceLevel(price=100.0, quantity=5, orders=1)]
    )
    book.timestamp.FromNanoseconds(1_700_000_000_000_000_000)
    await redis.set(names.book_key("ACME"), book.SerializeToString())
    async with connect(f"{ws_url}/ws/marketdata?symbols=ACME,GLOBX") as websocket:
        acme, globx = await receive(websocket, 2)
        assert acme == {
            "type": "book",
            "symbol": "ACME",
            "snapshot": True,
            "bids": [{"price": 100.0, "quantity": 5, "orders": 1}],
            "asks": [],
            "sequence": 5,
            "timestamp": TIMESTAMP,
        }
        assert (globx["symbol"], globx["snapshot"], globx["sequence"]) == ("GLOBX", True, 0)

        # ACME 4 and 5 are in the snapshot already.
        await publish(redis, level("ACME", 4), level("ACME", 5))
        await publish(
            redis,
            event(
                "ACME",
                6,
                trade_executed=engine_pb2.TradeExecuted(
                    trade_id="t-1", price_ticks=10000, quantity=5, aggressor_side=types_pb2.SELL
                ),
            ),
            level("ACME", 7, quantity=0),
            level("GLOBX", 1, side=types_pb2.SELL, price_ticks=2001),
            event(
                "ACME",
                8,
                quote_changed=engine_pb2.QuoteChanged(
                    last_ticks=10000, last_quantity=5, volume=5, bid_ticks=9990, bid_size=3
                ),
            ),
        )
        trade, delta, globx_delta, quote = await receive(websocket, 4)

    assert trade == {
        "type": "trade",
        "symbol": "ACME",
        "tradeId": "t-1",
        "price": 100.0,
        "quantity": 5,
        "aggressorSide": "SELL",
        "timestamp": TIMESTAMP,
        "sequence": 6,
    }
    assert delta == {
        "type": "book",
        "symbol": "ACME",
        "snapshot": False,
        "bids": [{"price": 100.0, "quantity": 0, "orders": 0}],
        "asks": [],
        "sequence": 7,
        "timestamp": TIMESTAMP,
    }
    assert (globx_delta["symbol"], globx_delta["sequence"]) == ("GLOBX", 1)
    assert globx_delta["asks"] == [{"price": 100.05, "quantity": 5, "orders": 1}]
    assert set(quote) == QUOTE_FIELDS | {"type"}
    assert (
        quote["type"],
        quote["ltp"],
        quote["bid"],
        quote["bidSize"],
        quote["ask"],
        quote["sequence"],
    ) == ("quote", 100.0, 99.9, 3, 0.0, 8)


async def test_subscribe_and_unsubscribe_messages_change_the_symbols(
    ws_url: str, redis: Redis
) -> None:
    async with connect(f"{ws_url}/ws/marketdata") as websocket:
        await websocket.send(json.dumps({"op": "subscribe", "symbols": ["GLOBX"]}))
        (snapshot,) = await receive(websocket)
        assert (snapshot["type"], snapshot["symbol"], snapshot["snapshot"]) == (
            "book",
            "GLOBX",
            True,
        )
        await publish(redis, level("GLOBX", 1), level("ACME", 1))
        (update,) = await receive(websocket)
        assert (update["symbol"], update["sequence"]) == ("GLOBX", 1)

        await websocket.send(json.dumps({"op": "unsubscribe", "symbols": ["GLOBX"]}))
        await websocket.send(json.dumps({"op": "subscribe", "symbols": ["ACME", "ACME"]}))
        (snapshot,) = await receive(websocket)
        assert (snapshot["symbol"], snapshot["snapshot"]) == ("ACME", True)
        await publish(redis, level("GLOBX", 2), level("ACME", 2))
        (update,) = await receive(websocket)

    assert (update["symbol"], update["sequence"]) == ("ACME", 2)


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("subscribe ACME", "message: not JSON"),
        ('["ACME"]', "message: expected an object"),
        ('{"op":"watch","symbols":["ACME"]}', 'op: unknown operation "watch"'),
        ('{"symbols":["ACME"]}', "op: unknown operation null"),
        ('{"op":"subscribe","symbols":"ACME"}', "symbols: expected a non-empty list"),
        ('{"op":"subscribe","symbols":[]}', "symbols: expected a non-empty list"),
        ('{"op":"subscribe","symbols":["ACME","NOPE"]}', 'symbols: unknown symbol "NOPE"'),
    ],
)
async def test_a_bad_message_gets_an_error_naming_the_field_and_the_connection_stays(
    ws_url: str, message: str, named: str
) -> None:
    async with connect(f"{ws_url}/ws/marketdata") as websocket:
        await websocket.send(message)
        (error,) = await receive(websocket)
        await websocket.send(json.dumps({"op": "subscribe", "symbols": ["ACME"]}))
        (snapshot,) = await receive(websocket)

    assert error["type"] == "error" and error["message"].startswith(named), error
    assert set(error) == {"type", "message"}
    assert (snapshot["type"], snapshot["symbol"]) == ("book", "ACME")


async def test_unknown_symbols_in_the_query_get_an_error(ws_url: str) -> None:
    async with connect(f"{ws_url}/ws/marketdata?symbols=ACME,NOPE") as websocket:
        (error,) = await receive(websocket)

    assert error == {"type": "error", "message": 'symbols: unknown symbol "NOPE"'}


async def test_order_updates_reach_their_owner_only(
    stream_app: StreamApp, ws_url: str, redis: Redis
) -> None:
    alice = await connect(f"{ws_url}/ws/orderupdates?apiKey={KEYS['alice']}")
    bob = await connect(f"{ws_url}/ws/orderupdates", additional_headers={"X-API-Key": KEYS["bob"]})
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

    for user, websocket in (("alice", alice), ("bob", bob)):
        received = await receive(websocket, 4)
        await websocket.close()
        assert [(m["type"], m["orderId"]) for m in received] == [
            ("order", f"{user[0]}-1"),
            ("fill", f"{user[0]}-1"),
            ("order", f"{user[0]}-1"),
            ("order", f"{user[0]}-2"),
        ]
        accepted, fill, filled, _ = received
        assert set(accepted) == ORDER_FIELDS | {"type"}
        assert (
            accepted["userId"],
            accepted["status"],
            accepted["side"],
            accepted["orderType"],
            accepted["price"],
        ) == (user, "NEW", "BUY", "LIMIT", 100.0)
        assert fill == {
            "type": "fill",
            "orderId": f"{user[0]}-1",
            "tradeId": "t-1",
            "symbol": "ACME",
            "side": "BUY",
            "price": 100.0,
            "quantity": 10,
            "timestamp": TIMESTAMP,
        }
        assert (filled["status"], filled["filledQuantity"], filled["remainingQuantity"]) == (
            "FILLED",
            10,
            0,
        )


@pytest.mark.parametrize("query", ["", "?apiKey=", "?apiKey=mx_wrong"])
async def test_order_updates_without_a_valid_key_close_with_4401(ws_url: str, query: str) -> None:
    async with connect(f"{ws_url}/ws/orderupdates{query}") as websocket:
        assert await closed(websocket) == (4401, "unauthorized")


@pytest.mark.parametrize("path", ["/", "/ws/", "/ws/trades", "/ws/marketdata/ACME"])
async def test_an_unknown_path_closes_with_4404(ws_url: str, path: str) -> None:
    async with connect(f"{ws_url}{path}") as websocket:
        assert (await closed(websocket))[0] == 4404


async def test_exchange_events_announce_what_changed_the_market(
    stream_app: StreamApp, ws_url: str, redis: Redis
) -> None:
    async with connect(f"{ws_url}/ws/exchange_events") as websocket:
        await until(lambda: stream_app.hub.subscriber_count == 1)
        await publish(
            redis,
            event(
                "ACME",
                1,
                market_state_changed=engine_pb2.MarketStateChanged(status=types_pb2.HALTED),
            ),
            engine_pb2.EngineEvent(
                symbol="ACME",
                exchange_sequence=3,
                timestamp_ns=NOW,
                trading_halted=engine_pb2.TradingHalted(symbol="ACME"),
            ),
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
        await publish_exchange_event(
            redis,
            streams_pb2.ExchangeEvent(kind=streams_pb2.LEADERBOARD_CHANGED, message="alice leads"),
        )
        halted, added, leaderboard = await receive(websocket, 3)

    assert halted == {
        "type": "event",
        "kind": "TRADING_HALTED",
        "symbol": "ACME",
        "message": "Trading in ACME is halted",
        "timestamp": TIMESTAMP,
        "sequence": 3,
    }
    assert (added["kind"], added["symbol"], added["sequence"]) == ("SYMBOL_ADDED", "NEWCO", 4)
    assert (leaderboard["kind"], leaderboard["symbol"], leaderboard["message"]) == (
        "LEADERBOARD_CHANGED",
        "",
        "alice leads",
    )


async def test_a_slow_consumer_is_closed_with_4408_while_a_fast_one_gets_everything(
    stream_app: StreamApp, ws_url: str, redis: Redis
) -> None:
    url = f"{ws_url}/ws/marketdata?symbols=ACME"
    slow, fast = await connect(url), await connect(url)
    assert (await receive(slow))[0]["snapshot"] and (await receive(fast))[0]["snapshot"]

    fast_sequences: list[int] = []

    async def read_fast() -> None:
        async for message in fast:
            fast_sequences.append(json.loads(message)["sequence"])

    def fast_has(count: int) -> Callable[[], bool]:
        return lambda: len(fast_sequences) >= count

    reader = asyncio.create_task(read_fast())
    slow_closed: asyncio.Task[tuple[int | None, str | None]] | None = None
    events_per_batch, sequence, batches_after_cut = 250, 0, 0
    while batches_after_cut < 3 and sequence < 400 * events_per_batch:
        if stream_app.hub.subscriber_count == 1:
            batches_after_cut += 1
            # The slow client reads from now on: through what the buffers hold, to the close.
            slow_closed = slow_closed or asyncio.create_task(closed(slow))
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
    assert slow_closed is not None, "the slow consumer was never cut off"

    await until(lambda: len(fast_sequences) == sequence)
    assert fast_sequences == list(range(1, sequence + 1))
    assert await slow_closed == (4408, "slow consumer")
    reader.cancel()
    await fast.close()


async def test_an_oversize_message_is_refused_with_1009(ws_url: str) -> None:
    async with connect(f"{ws_url}/ws/marketdata") as websocket:
        await websocket.send(json.dumps({"op": "subscribe", "symbols": ["ACME"] * 20_000}))
        assert len(json.dumps({"op": "subscribe", "symbols": ["ACME"] * 20_000})) > (
            MAX_MESSAGE_BYTES
        )
        assert (await closed(websocket))[0] == 1009


async def test_stopping_the_service_closes_connections_with_1001(
    redis_url: str, redis: Redis
) -> None:
    app = await start_stream_app(redis_url, redis)
    base = f"ws://127.0.0.1:{app.ws_port}"
    market = await connect(f"{base}/ws/marketdata?symbols=ACME")
    events = await connect(f"{base}/ws/exchange_events")
    await receive(market)
    await until(lambda: app.hub.subscriber_count == 2)

    await app.stop(grace=0)

    assert await closed(market) == (1001, "shutting down")
    assert await closed(events) == (1001, "shutting down")


STORM_POOL = 4
"""Pooled Redis connections in the storm tests, far fewer than the connects: they wait for one
(and share snapshot reads), never fail for want of one."""


def book_at(sequence: int, quantity: int = 5) -> types_pb2.OrderBook:
    book = types_pb2.OrderBook(
        symbol="ACME",
        sequence=sequence,
        bids=[types_pb2.PriceLevel(price=100.0, quantity=quantity, orders=1)],
    )
    book.timestamp.FromNanoseconds(NOW)
    return book


async def test_300_simultaneous_connects_all_get_their_snapshot_then_the_deltas(
    redis_url: str, redis: Redis
) -> None:
    await redis.set(names.book_key("ACME"), book_at(5).SerializeToString())
    app = await start_stream_app(redis_url, redis, redis_connections=STORM_POOL)
    url = f"ws://127.0.0.1:{app.ws_port}/ws/marketdata?symbols=ACME"
    sockets = await asyncio.gather(*(connect(url, open_timeout=60) for _ in range(300)))
    try:
        firsts = await asyncio.gather(*(receive(websocket) for websocket in sockets))
        assert {(m["snapshot"], m["sequence"], m["bids"][0]["quantity"]) for [m] in firsts} == {
            (True, 5, 5)
        }

        await publish(redis, level("ACME", 6, quantity=7))

        deltas = await asyncio.gather(*(receive(websocket) for websocket in sockets))
        assert {(m["snapshot"], m["sequence"]) for [m] in deltas} == {(False, 6)}
    finally:
        await asyncio.gather(*(websocket.close() for websocket in sockets))
        await app.stop(grace=0)


async def test_100_wrong_keys_in_a_connect_storm_all_close_with_4401(
    redis_url: str, redis: Redis
) -> None:
    """Beside 100 market-data connects wanting snapshots, so the few pooled connections are
    busy: a wrong key still gets 4401, never 1011, and the right key gets through."""
    app = await start_stream_app(redis_url, redis, redis_connections=STORM_POOL)
    base = f"ws://127.0.0.1:{app.ws_port}"
    wrong = [f"{base}/ws/orderupdates?apiKey=mx_wrong_{i}" for i in range(100)]
    market = [f"{base}/ws/marketdata?symbols=ACME"] * 100
    sockets = await asyncio.gather(
        *(connect(url, open_timeout=60) for url in [*wrong, *market]),
        connect(f"{base}/ws/orderupdates?apiKey={KEYS['alice']}", open_timeout=60),
    )
    try:
        closes = await asyncio.gather(*(closed(websocket) for websocket in sockets[:100]))
        assert set(closes) == {(4401, "unauthorized")}
        snapshots = await asyncio.gather(*(receive(websocket) for websocket in sockets[100:200]))
        assert {m["snapshot"] for [m] in snapshots} == {True}
        await until(lambda: app.hub.subscriber_count == 101)  # alice's too
    finally:
        await asyncio.gather(*(websocket.close() for websocket in sockets))
        await app.stop(grace=0)


async def test_after_redis_is_killed_and_back_empty_market_subscribers_are_resynchronised(
    tmp_path: Path,
) -> None:
    """docs/websockets.md, "Feed loss": market-data connections stay open and get a fresh
    snapshot once the engine has refilled Redis; order updates (no snapshot to catch up from)
    are closed, and reconnecting works."""
    port, password = processes.free_port(), new_password()
    url = redis_url_for(f"127.0.0.1:{port}", password)
    server = processes.start_redis(port, tmp_path / "redis", password)
    redis = Redis.from_url(url)
    await redis.set(names.book_key("ACME"), book_at(5).SerializeToString())
    app = await start_stream_app(url, redis)
    base = f"ws://127.0.0.1:{app.ws_port}"
    market = await asyncio.gather(
        *(connect(f"{base}/ws/marketdata?symbols=ACME") for _ in range(50))
    )
    orders = await connect(f"{base}/ws/orderupdates?apiKey={KEYS['alice']}")
    try:
        await asyncio.gather(*(receive(websocket) for websocket in market))
        await until(lambda: app.hub.subscriber_count == 51)

        server.kill()
        await redis.aclose()
        # Back with nothing (a new data directory); the engine writes its caches again, with
        # what it applied meanwhile: the book at sequence 9.
        server = processes.start_redis(port, tmp_path / "redis-again", password)
        redis = Redis.from_url(url)
        await until(lambda: app.hub.subscriber_count != 51, timeout=30)  # orders closed
        await write_caches(redis, (book_at(9, quantity=3),))

        assert await closed(orders) == (1011, "event feed interrupted; reconnect")
        resent = await asyncio.gather(*(receive(websocket) for websocket in market))
        assert {(m["snapshot"], m["sequence"], m["bids"][0]["quantity"]) for [m] in resent} == {
            (True, 9, 3)
        }
        await publish(redis, level("ACME", 10, quantity=4))
        deltas = await asyncio.gather(*(receive(websocket) for websocket in market))
        assert {(m["snapshot"], m["sequence"]) for [m] in deltas} == {(False, 10)}
        async with connect(f"{base}/ws/orderupdates?apiKey={KEYS['alice']}") as again:
            await until(lambda: app.hub.subscriber_count == 51)
            assert again.close_code is None
    finally:
        await asyncio.gather(*(websocket.close() for websocket in market))
        await app.stop(grace=0)
        await redis.aclose()
        server.stop()


async def test_end_to_end_through_the_real_services(exchange_stack: ExchangeStack) -> None:
    """Orders placed through the gateway reach the WebSocket channels, through Envoy's /ws/
    route when the stack runs Envoy, else straight to the stream service's WebSocket port."""
    if "edge" in exchange_stack.processes:
        base = f"ws://127.0.0.1:{exchange_stack.ports.edge}"
    else:
        base = f"ws://{exchange_stack.service_env()['MOCKEX_STREAM_WS_ADDRESS']}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}") as channel:
        exchange = Exchange(channel, STACK_ADMIN_KEY)
        symbol = await exchange.add_symbol()
        seller = await exchange.participant(positions={symbol: 100})
        buyer = await exchange.participant()
        resting = await seller.place(symbol, "SELL", 5, 20.0)
        market = await connect(f"{base}/ws/marketdata?symbols={symbol}")
        orders = await connect(f"{base}/ws/orderupdates?apiKey={seller.api_key}")
        (snapshot,) = await receive(market)
        assert snapshot["snapshot"] and snapshot["asks"] == [
            {"price": 20.0, "quantity": 5, "orders": 1}
        ]

        await buyer.place(symbol, "BUY", 2, 20.0)

        sequences, kinds = [snapshot["sequence"]], []
        while "quote" not in kinds:
            (message,) = await receive(market)
            kinds.append(message["type"])
            sequences.append(message["sequence"])
        fill, update = await receive(orders, 2)
        await market.close()
        await orders.close()

    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert "trade" in kinds and "book" in kinds
    assert (fill["type"], fill["orderId"], fill["price"], fill["quantity"]) == (
        "fill",
        resting.order_id,
        20.0,
        2,
    )
    assert (update["type"], update["orderId"], update["status"], update["filledQuantity"]) == (
        "order",
        resting.order_id,
        "PARTIALLY_FILLED",
        2,
    )
