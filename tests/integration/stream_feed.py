"""What the stream service tests share: engine batches PUBLISHed by hand as the engine does, and
a stream service in-process on a real Redis with two symbols and two users."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from mockex import names
from mockex.auth import hash_api_key
from stream_svc.app import StreamApp
from stream_svc.config import StreamConfig

NOW = 1_700_000_000_000_000_000
ADMIN_KEY = "mx_admin_test_key"
KEYS = {"alice": "mx_alice_key", "bob": "mx_bob_key"}
QUEUE_SIZE = 16
_command_ids = itertools.count(1)


def event(symbol: str, sequence: int, **payload: object) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(symbol=symbol, sequence=sequence, timestamp_ns=NOW, **payload)


def level(
    symbol: str,
    sequence: int,
    side: int = types_pb2.BUY,
    price_ticks: int = 10000,
    quantity: int = 5,
) -> engine_pb2.EngineEvent:
    return event(
        symbol,
        sequence,
        book_level_changed=engine_pb2.BookLevelChanged(
            side=side, price_ticks=price_ticks, quantity=quantity, order_count=1 if quantity else 0
        ),
    )


def order(user_id: str, order_id: str, status: int, filled: int = 0) -> engine_pb2.OrderState:
    return engine_pb2.OrderState(
        order_id=order_id,
        user_id=user_id,
        symbol="ACME",
        side=types_pb2.BUY,
        type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD,
        price_ticks=10000,
        quantity=10,
        filled_quantity=filled,
        filled_notional_ticks=filled * 10000,
        status=status,
    )


async def publish(redis: Redis, *events: engine_pb2.EngineEvent, **command: object) -> None:
    batch = engine_pb2.EngineBatch(
        command=engine_pb2.EngineCommand(
            command_id=f"c-{next(_command_ids)}", timestamp_ns=NOW, **command
        ),
        events=events,
    )
    await redis.publish(names.EVENTS_CHANNEL, batch.SerializeToString())


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `condition`, polling; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def start_stream_app(redis_url: str, redis: Redis, **config: object) -> StreamApp:
    """ACME (tick 0.01) and GLOBX (tick 0.05) listed, alice and bob with KEYS, the caches marked
    complete; gRPC and WebSocket on free ports; `config` overrides StreamConfig's fields."""
    await write_caches(redis)
    app = StreamApp(
        StreamConfig(
            redis_url=redis_url,
            grpc_address="127.0.0.1:0",
            ws_address="127.0.0.1:0",
            admin_key=ADMIN_KEY,
            queue_size=QUEUE_SIZE,
            **config,  # type: ignore[arg-type]
        )
    )
    await app.start()
    return app


async def write_caches(redis: Redis, books: tuple[types_pb2.OrderBook, ...] = ()) -> None:
    """What the engine writes to Redis (again after Redis came back empty): the symbols, the
    users' keys, `books`, then the mark that every cache is complete."""
    for book in books:
        await redis.set(names.book_key(book.symbol), book.SerializeToString())
    await redis.hset(
        names.SYMBOLS_KEY,
        mapping={
            symbol: types_pb2.SymbolInfo(
                symbol=symbol, tick_size=tick, lot_size=1
            ).SerializeToString()
            for symbol, tick in (("ACME", 0.01), ("GLOBX", 0.05))
        },
    )
    await redis.hset(
        names.USERS_KEY,
        mapping={
            hash_api_key(key): engine_pb2.UserRecord(
                user_id=user_id, api_key_sha256=hash_api_key(key)
            ).SerializeToString()
            for user_id, key in KEYS.items()
        },
    )
    await redis.set(names.VIEWS_KEY, "test")  # as the engine does once every cache is written
