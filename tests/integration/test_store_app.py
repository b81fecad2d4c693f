"""store_svc against a real Kafka broker and a real database (an SQLite file, and PostgreSQL when
it is installed): what the engine logs is what the store answers, exactly once, across replays
and restarts; every answer already holds the log as it stood when the request arrived, or is
UNAVAILABLE.

The engine's log is written by hand here (EngineBatch messages as the engine emits them), so the
expected answers are known exactly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, make_url, select

from exchange.internal.v1 import engine_pb2, store_pb2, store_pb2_grpc
from exchange.v1 import types_pb2
from mockex import processes
from mockex.participant import order as public_order
from mockex.participant import timestamp
from store_svc import db
from store_svc.app import StoreApp
from store_svc.config import StoreConfig

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30.0
SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
ALICE_KEY_SHA = "a1" * 32
BOB_KEY_SHA = "b0" * 32
CAROL_KEY_SHA = "c1" * 32
RIVAL_KEY_SHA = "c2" * 32
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FRESH_ROUNDS = 20
"""Produce-then-query rounds of the read-your-writes test (each also lists the user's orders)."""


# ---- a throwaway PostgreSQL server ----------------------------------------------------------


def _initdb() -> Path | None:
    """The newest installed PostgreSQL's initdb (Debian layout), or None."""
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if path.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda path: int(path.parent.parent.name), default=None)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")


class PostgresServer:
    """A throwaway PostgreSQL server in a temporary folder, which a test may stop and start.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` OS user; the folder
    is made outside pytest's tmp_path because that one is private to root.
    """

    def __init__(self, initdb: Path) -> None:
        self._pg_ctl_path = str(initdb.parent / "pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="mockex-postgres-"))
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self._data = self.root / "data"
        self.port = processes.free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        """postgresql+psycopg://postgres@127.0.0.1:PORT, without a database name."""
        initdb_options = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        _run([*self._as_postgres, str(initdb), "-D", str(self._data), *initdb_options])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl(
            "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, every connection cut at once."""
        if (self._data / "postmaster.pid").exists():
            self._pg_ctl("-m", mode, "-w", "stop")

    def _pg_ctl(self, *args: str) -> None:
        _run([*self._as_postgres, self._pg_ctl_path, "-D", str(self._data), *args])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the session's own (skips when PostgreSQL is not installed)."""
    initdb = _initdb()
    if initdb is None:
        pytest.skip(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "run scripts/install-postgres.sh"
        )
    server = PostgresServer(initdb)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


async def new_database(server: PostgresServer) -> str:
    """The URL of a new, empty database on `server`."""
    name = f"store_{uuid.uuid4().hex[:12]}"
    admin_dsn = server.url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server.url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database for the test."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'store.db'}"
    return await new_database(request.getfixturevalue("postgres_server"))


# ---- the engine's log, by hand -------------------------------------------------------------


def order_state(
    order_id: str,
    user_id: str,
    side: int,
    price_ticks: int,
    quantity: int,
    status: int,
    created_ns: int,
    updated_ns: int,
    filled: int = 0,
    reason: int = 0,
) -> engine_pb2.OrderState:
    return engine_pb2.OrderState(
        order_id=order_id,
        user_id=user_id,
        symbol="ACME",
        side=side,
        type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD,
        price_ticks=price_ticks,
        quantity=quantity,
        filled_quantity=filled,
        filled_notional_ticks=filled * 10125,
        status=status,
        reason=reason,
        client_order_id=f"client-{order_id}",
        created_ns=created_ns,
        updated_ns=updated_ns,
    )


def event(sequence: int, at: int, **kind: Any) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(symbol="ACME", sequence=sequence, timestamp_ns=at, **kind)


def command(command_id: str, at: int, **kind: Any) -> engine_pb2.EngineCommand:
    return engine_pb2.EngineCommand(command_id=command_id, timestamp_ns=at, **kind)


def account_created(
    exchange_sequence: int, user_id: str, key_sha: str, admin: bool = False, **fields: Any
) -> engine_pb2.EngineEvent:
    """The event of an account the engine opened (a refused CreateAccount logs none)."""
    return engine_pb2.EngineEvent(
        timestamp_ns=T0,
        exchange_sequence=exchange_sequence,
        account_created=engine_pb2.AccountCreated(
            user_id=user_id, admin=admin, api_key_sha256=key_sha, **fields
        ),
    )


def level(side: int, price_ticks: int, quantity: int, orders: int) -> engine_pb2.BookLevelChanged:
    return engine_pb2.BookLevelChanged(
        side=side, price_ticks=price_ticks, quantity=quantity, order_count=orders
    )


T1, T2, T3, T4, T5 = (T0 + n * SECOND for n in range(1, 6))
# alice rests SELL 10 @ 101.25 (o1); bob's BUY 4 @ 101.30 (o2) takes 4 of it (trade t1);
# alice cancels the rest of o1; bob rests BUY 1 @ 100.00 (o3).
O1_NEW = order_state("o1", "alice", types_pb2.SELL, 10125, 10, types_pb2.NEW, T1, T1)
O1_PARTIAL = order_state(
    "o1", "alice", types_pb2.SELL, 10125, 10, types_pb2.PARTIALLY_FILLED, T1, T2, filled=4
)
O1_CANCELLED = order_state(
    "o1",
    "alice",
    types_pb2.SELL,
    10125,
    10,
    types_pb2.CANCELLED,
    T1,
    T3,
    filled=4,
    reason=types_pb2.CANCELLED_BY_OWNER,
)
O2_NEW = order_state("o2", "bob", types_pb2.BUY, 10130, 4, types_pb2.NEW, T2, T2)
O2_FILLED = order_state("o2", "bob", types_pb2.BUY, 10130, 4, types_pb2.FILLED, T2, T2, filled=4)
O3_NEW = order_state("o3", "bob", types_pb2.BUY, 10000, 1, types_pb2.NEW, T4, T4)
# After the restart: alice's BUY of 1000 @ 101.25 (o4) is rejected.
O4_REJECTED = order_state(
    "o4",
    "alice",
    types_pb2.BUY,
    10125,
    1000,
    types_pb2.REJECTED,
    T5,
    T5,
    reason=types_pb2.INSUFFICIENT_CASH,
)

LOG = [
    engine_pb2.EngineBatch(
        command=command(
            "add-ACME",
            T0,
            add_symbol=engine_pb2.AddSymbolCommand(symbol="ACME", tick_size="0.01", lot_size=1),
        ),
        events=[event(1, T0, symbol_added=engine_pb2.SymbolAdded(tick_size="0.01", lot_size=1))],
        stream_id="1-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "user-alice",
            T0,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="alice",
                cash_units=100_000_000,
                positions={"ACME": 10},
                api_key_sha256=ALICE_KEY_SHA,
            ),
        ),
        events=[
            account_created(
                2,
                "alice",
                ALICE_KEY_SHA,
                cash_units=100_000_000,
                starting_value_units=110_000_000,
                grants=[engine_pb2.PositionGrant(symbol="ACME", quantity=10, price_ticks=10000)],
            )
        ],
        stream_id="2-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "user-bob",
            T0,
            create_account=engine_pb2.CreateAccountCommand(
                user_id="bob", cash_units=100_000_000, api_key_sha256=BOB_KEY_SHA, admin=True
            ),
        ),
        events=[
            account_created(
                3,
                "bob",
                BOB_KEY_SHA,
                admin=True,
                cash_units=100_000_000,
                starting_value_units=100_000_000,
            )
        ],
        stream_id="3-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "o1",
            T1,
            place_order=engine_pb2.PlaceOrderCommand(
                order_id="o1",
                user_id="alice",
                symbol="ACME",
                side=types_pb2.SELL,
                type=types_pb2.LIMIT,
                time_in_force=types_pb2.GFD,
                price_ticks=10125,
                quantity=10,
                client_order_id="client-o1",
            ),
        ),
        events=[
            event(2, T1, order_accepted=engine_pb2.OrderAccepted(order=O1_NEW)),
            event(3, T1, book_level_changed=level(types_pb2.SELL, 10125, 10, 1)),
        ],
        stream_id="4-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "o2",
            T2,
            place_order=engine_pb2.PlaceOrderCommand(
                order_id="o2",
                user_id="bob",
                symbol="ACME",
                side=types_pb2.BUY,
                type=types_pb2.LIMIT,
                time_in_force=types_pb2.GFD,
                price_ticks=10130,
                quantity=4,
                client_order_id="client-o2",
            ),
        ),
        events=[
            event(4, T2, order_accepted=engine_pb2.OrderAccepted(order=O2_NEW)),
            event(
                5,
                T2,
                trade_executed=engine_pb2.TradeExecuted(
                    trade_id="t1",
                    price_ticks=10125,
                    quantity=4,
                    aggressor_side=types_pb2.BUY,
                    buy_order_id="o2",
                    sell_order_id="o1",
                    buyer_id="bob",
                    seller_id="alice",
                ),
            ),
            event(
                6,
                T2,
                order_filled=engine_pb2.OrderFilled(
                    order=O1_PARTIAL, trade_id="t1", price_ticks=10125, quantity=4
                ),
            ),
            event(
                7,
                T2,
                order_filled=engine_pb2.OrderFilled(
                    order=O2_FILLED, trade_id="t1", price_ticks=10125, quantity=4
                ),
            ),
            event(8, T2, book_level_changed=level(types_pb2.SELL, 10125, 6, 1)),
        ],
        stream_id="5-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "o1", T3, cancel_order=engine_pb2.CancelOrderCommand(order_id="o1", user_id="alice")
        ),
        events=[
            event(9, T3, order_cancelled=engine_pb2.OrderCancelled(order=O1_CANCELLED)),
            event(10, T3, book_level_changed=level(types_pb2.SELL, 10125, 0, 0)),
        ],
        stream_id="6-0",
    ),
    engine_pb2.EngineBatch(
        command=command(
            "o3",
            T4,
            place_order=engine_pb2.PlaceOrderCommand(
                order_id="o3",
                user_id="bob",
                symbol="ACME",
                side=types_pb2.BUY,
                type=types_pb2.LIMIT,
                time_in_force=types_pb2.GFD,
                price_ticks=10000,
                quantity=1,
                client_order_id="client-o3",
            ),
        ),
        events=[
            event(11, T4, order_accepted=engine_pb2.OrderAccepted(order=O3_NEW)),
            event(12, T4, book_level_changed=level(types_pb2.BUY, 10000, 1, 1)),
        ],
        stream_id="7-0",
    ),
]
SNAPSHOT = engine_pb2.EngineSnapshot(
    log_offset=len(LOG) - 1,
    last_stream_id="7-0",
    timestamp_ns=T4,
    market_open=True,
    symbols=[
        engine_pb2.SymbolSnapshot(
            symbol="ACME",
            tick_size="0.01",
            lot_size=1,
            sequence=12,
            trade_count=1,
            last_ticks=10125,
            last_quantity=4,
            volume=4,
            open_ticks=10125,
            high_ticks=10125,
            low_ticks=10125,
        )
    ],
    open_orders=[engine_pb2.RestingOrder(order=O3_NEW, reserved_cash_units=1_000_000)],
    users=[
        engine_pb2.UserRecord(user_id="alice", api_key_sha256=ALICE_KEY_SHA),
        engine_pb2.UserRecord(user_id="bob", admin=True, api_key_sha256=BOB_KEY_SHA),
    ],
)
AFTER_RESTART = engine_pb2.EngineBatch(
    command=command(
        "o4",
        T5,
        place_order=engine_pb2.PlaceOrderCommand(
            order_id="o4",
            user_id="alice",
            symbol="ACME",
            side=types_pb2.BUY,
            type=types_pb2.LIMIT,
            time_in_force=types_pb2.GFD,
            price_ticks=10125,
            quantity=1000,
            client_order_id="client-o4",
        ),
    ),
    events=[event(13, T5, order_rejected=engine_pb2.OrderRejected(order=O4_REJECTED))],
    stream_id="8-0",
)
GLOBX_LISTED = engine_pb2.EngineBatch(
    command=command(
        "add-GLOBX",
        T5,
        add_symbol=engine_pb2.AddSymbolCommand(symbol="GLOBX", tick_size="0.05", lot_size=10),
    ),
    events=[
        engine_pb2.EngineEvent(
            symbol="GLOBX",
            sequence=1,
            timestamp_ns=T5,
            symbol_added=engine_pb2.SymbolAdded(tick_size="0.05", lot_size=10),
        )
    ],
    stream_id="9-0",
)


def fill(price: float, quantity: int, at: int) -> types_pb2.Fill:
    return types_pb2.Fill(trade_id="t1", price=price, quantity=quantity, timestamp=timestamp(at))


EXPECTED_ORDERS = {
    "o1": public_order(O1_CANCELLED, 0.01, [fill(101.25, 4, T2)]),
    "o2": public_order(O2_FILLED, 0.01, [fill(101.25, 4, T2)]),
    "o3": public_order(O3_NEW, 0.01),
}
EXPECTED_TRADE = types_pb2.Trade(
    trade_id="t1",
    price=101.25,
    quantity=4,
    aggressor_side=types_pb2.BUY,
    timestamp=timestamp(T2),
    sequence=5,
    symbol="ACME",
)
EXPECTED_ROW_COUNTS = {
    "symbols": 1,
    "users": 2,
    "orders": 3,
    "fills": 2,
    "trades": 1,
    "snapshots": 1,
    "news": 0,
    "accounts": 2,
    "report_activity": 2,  # alice's order accepted and its fill (reports: participants only)
    "round_marks": 0,
    "score_samples": 0,
    "rankings": 0,
}


# ---- helpers -------------------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, messages: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(topic, message.SerializeToString())
    finally:
        await producer.stop()


@asynccontextmanager
async def kafka_producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A producer like the engine's: acks=all and idempotent, so an acked record is in the log."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def produce_log(bootstrap: str, topics: dict[str, str]) -> None:
    await produce(bootstrap, topics["events"], LOG)
    await produce(bootstrap, topics["snapshots"], [SNAPSHOT])


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_store(config: StoreConfig) -> AsyncIterator[tuple[StoreApp, Any]]:
    """A started StoreApp and a StoreService stub connected to it."""
    app = StoreApp(config)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.grpc_address) as channel:
            yield app, store_pb2_grpc.StoreServiceStub(channel)
    finally:
        await app.stop()


def store_config(
    database_url: str, bootstrap: str, topics: dict[str, str], freshness_timeout: float = 5.0
) -> StoreConfig:
    return StoreConfig(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        events_topic=topics["events"],
        snapshots_topic=topics["snapshots"],
        grpc_address="127.0.0.1:0",
        freshness_timeout_seconds=freshness_timeout,
    )


async def stored(stub: Any, order_id: str) -> types_pb2.Order | None:
    answer = await stub.GetStoredOrder(store_pb2.GetStoredOrderRequest(order_id=order_id))
    return answer.order if answer.found else None


async def listed(stub: Any, symbol: str) -> bool:
    """Whether the store knows the symbol (its trades are NOT_FOUND until it does)."""
    try:
        await stub.ListSymbolTrades(store_pb2.ListSymbolTradesRequest(symbol=symbol))
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


async def health_of(health: health_pb2_grpc.HealthStub, service: str) -> int:
    """The store's standard health answer for `service` ("" readiness, "liveness")."""
    answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return answer.status


async def until_ready_is(health: health_pb2_grpc.HealthStub, status: int, within: float) -> None:
    """Until readiness answers `status`; fail after `within` seconds."""
    started = time.monotonic()
    while await health_of(health, "") != status:
        assert time.monotonic() - started < within, f"readiness not {status} after {within}s"
        await asyncio.sleep(0.1)


def data_tables() -> dict:
    """The tables that hold exchange data (not the store's own log positions)."""
    return {name: table for name, table in db.metadata.tables.items() if name != "log_positions"}


async def row_counts(database_url: str) -> dict[str, int]:
    engine = db.create_db_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                name: await conn.scalar(select(func.count()).select_from(table))
                for name, table in data_tables().items()
            }
    finally:
        await engine.dispose()


async def table_dump(database_url: str) -> dict[str, list[tuple]]:
    engine = db.create_db_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                name: sorted(tuple(row) for row in await conn.execute(select(table)))
                for name, table in data_tables().items()
            }
    finally:
        await engine.dispose()


async def wait_for_log(stub: Any, database_url: str) -> None:
    """Until the last events batch and the snapshot are both stored (separate topics)."""

    async def settled() -> bool:
        return (await stored(stub, "o3")) is not None and (
            (await row_counts(database_url))["snapshots"] == 1
        )

    await wait_until(settled, "the store to write the log and the snapshot")


async def answers(stub: Any) -> dict[str, Any]:
    """Every query the store answers about the log, for before/after comparisons."""
    result: dict[str, Any] = {
        order_id: await stored(stub, order_id) for order_id in ("o1", "o2", "o3")
    }
    for user_id in ("alice", "bob"):
        for status in ("", "open", "closed"):
            reply = await stub.ListUserOrders(
                store_pb2.ListUserOrdersRequest(user_id=user_id, status=status)
            )
            result[f"{user_id}:{status}"] = list(reply.orders)
    reply = await stub.ListSymbolTrades(store_pb2.ListSymbolTradesRequest(symbol="ACME"))
    result["trades"] = list(reply.trades)
    for interval in ("1s", "1m"):
        reply = await stub.GetSymbolCandles(
            store_pb2.GetSymbolCandlesRequest(symbol="ACME", interval=interval)
        )
        result[f"candles:{interval}"] = list(reply.candles)
    return result


# ---- the tests -----------------------------------------------------------------------------


async def test_store_answers_exactly_what_the_engine_logged(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    async with running_store(store_config(database_url, kafka_bootstrap, topics)) as (_, stub):
        await produce_log(kafka_bootstrap, topics)
        await wait_for_log(stub, database_url)
        found = await answers(stub)

    assert {order_id: found[order_id] for order_id in EXPECTED_ORDERS} == EXPECTED_ORDERS
    o1 = found["o1"]
    assert (
        o1.status,
        o1.status_reason,
        o1.filled_quantity,
        o1.remaining_quantity,
        o1.avg_fill_price,
        o1.price,
    ) == (types_pb2.CANCELLED, "CANCELLED_BY_OWNER", 4, 0, 101.25, 101.25)
    assert found["alice:"] == found["alice:closed"] == [EXPECTED_ORDERS["o1"]]
    assert found["alice:open"] == []
    assert found["bob:"] == [EXPECTED_ORDERS["o3"], EXPECTED_ORDERS["o2"]]
    assert found["bob:open"] == [EXPECTED_ORDERS["o3"]]
    assert found["bob:closed"] == [EXPECTED_ORDERS["o2"]]
    assert found["trades"] == [EXPECTED_TRADE]
    assert found["candles:1s"] == [
        types_pb2.Candle(
            start=timestamp(T2), open=101.25, high=101.25, low=101.25, close=101.25, volume=4
        )
    ]
    assert found["candles:1m"] == [
        types_pb2.Candle(
            start=timestamp(T0), open=101.25, high=101.25, low=101.25, close=101.25, volume=4
        )
    ]

    dump = await table_dump(database_url)
    assert dump["symbols"] == [("ACME", "0.01", 1)]
    assert dump["users"] == [("alice", False, ALICE_KEY_SHA), ("bob", True, BOB_KEY_SHA)]
    assert dump["trades"] == [("t1", "ACME", 10125, 4, "BUY", "o2", "o1", "bob", "alice", T2, 5)]
    assert dump["fills"] == [("o1", "t1", 10125, 4, T2, 6, 0), ("o2", "t1", 10125, 4, T2, 7, 0)]
    assert [(row[0], row[10], row[16]) for row in dump["orders"]] == [
        ("o1", "CANCELLED", 0),
        ("o2", "FILLED", 3),
        ("o3", "NEW", 0),
    ]
    assert dump["snapshots"] == [(len(LOG) - 1, T4, SNAPSHOT.SerializeToString())]


async def test_store_rejects_bad_queries_naming_the_field(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    async with running_store(store_config(database_url, kafka_bootstrap, topics)) as (_, stub):
        await produce_log(kafka_bootstrap, topics)
        await wait_for_log(stub, database_url)

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.ListSymbolTrades(store_pb2.ListSymbolTradesRequest(symbol="NOPE"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "NOPE" in unknown.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.GetSymbolCandles(
                store_pb2.GetSymbolCandlesRequest(symbol="NOPE", interval="1m")
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetSymbolCandles(
                store_pb2.GetSymbolCandlesRequest(symbol="ACME", interval="5m")
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "interval" in bad.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ListUserOrders(
                store_pb2.ListUserOrdersRequest(user_id="alice", status="pending")
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "status" in bad.value.details()
        assert await stored(stub, "never-placed") is None


async def test_log_written_twice_neither_duplicates_rows_nor_regresses_orders(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    async with running_store(store_config(database_url, kafka_bootstrap, topics)) as (_, stub):
        await produce_log(kafka_bootstrap, topics)
        await wait_for_log(stub, database_url)
        before = await answers(stub)

        # The whole log again (o1 NEW and PARTIALLY_FILLED arrive after its cancel), then a
        # batch that marks the end: once GLOBX is listed, everything before it is stored.
        await produce_log(kafka_bootstrap, topics)
        await produce(kafka_bootstrap, topics["events"], [GLOBX_LISTED])

        await wait_until(lambda: listed(stub, "GLOBX"), "GLOBX to be listed")
        after = await answers(stub)

    assert after == before
    assert after["o1"].status == types_pb2.CANCELLED
    assert await row_counts(database_url) == {**EXPECTED_ROW_COUNTS, "symbols": 2}


async def test_rereading_the_whole_log_changes_no_row(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    config = store_config(database_url, kafka_bootstrap, topics)
    async with running_store(config) as (_, stub):
        await produce_log(kafka_bootstrap, topics)
        await wait_for_log(stub, database_url)
    before = await table_dump(database_url)

    # Forgetting the stored positions makes the store read the log from the start again.
    engine = db.create_db_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(db.log_positions.delete())
    await engine.dispose()
    async with running_store(config) as (app, stub):
        await produce(kafka_bootstrap, topics["events"], [GLOBX_LISTED])
        await wait_until(lambda: listed(stub, "GLOBX"), "GLOBX to be listed")
        assert app.consumer is not None

        async def all_reread() -> bool:
            return app.consumer.records_seen == len(LOG) + 2

        await wait_until(all_reread, "the log, the snapshot and GLOBX to be read again")
    after = await table_dump(database_url)

    assert after["symbols"] == [("ACME", "0.01", 1), ("GLOBX", "0.05", 10)]
    assert {**after, "symbols": before["symbols"]} == before


async def test_restarted_store_resumes_after_its_stored_log_positions(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    config = store_config(database_url, kafka_bootstrap, topics)
    async with running_store(config) as (_, stub):
        await produce_log(kafka_bootstrap, topics)
        await wait_for_log(stub, database_url)

    await produce(kafka_bootstrap, topics["events"], [AFTER_RESTART])
    async with running_store(config) as (app, stub):

        async def o4_stored() -> bool:
            return (await stored(stub, "o4")) is not None

        await wait_until(o4_stored, "the store to resume and write o4")
        o4 = await stored(stub, "o4")
        assert app.consumer is not None
        assert app.consumer.records_seen == 1
        alice = await stub.ListUserOrders(store_pb2.ListUserOrdersRequest(user_id="alice"))

    assert o4 == public_order(O4_REJECTED, 0.01)
    assert o4.reject_reason == "INSUFFICIENT_CASH"
    assert [order.order_id for order in alice.orders] == ["o4", "o1"]
    assert await row_counts(database_url) == {
        **EXPECTED_ROW_COUNTS,
        "orders": 4,
        "report_activity": 3,
    }


# ---- read your writes ----------------------------------------------------------------------


def placed(order_id: str, user_id: str, at: int) -> engine_pb2.EngineBatch:
    """A BUY 1 @ 100.00 that rests: the batch the engine logs for it."""
    state = order_state(order_id, user_id, types_pb2.BUY, 10000, 1, types_pb2.NEW, at, at)
    return engine_pb2.EngineBatch(
        command=command(
            order_id,
            at,
            place_order=engine_pb2.PlaceOrderCommand(
                order_id=order_id,
                user_id=user_id,
                symbol="ACME",
                side=types_pb2.BUY,
                type=types_pb2.LIMIT,
                time_in_force=types_pb2.GFD,
                price_ticks=10000,
                quantity=1,
            ),
        ),
        events=[event(1, at, order_accepted=engine_pb2.OrderAccepted(order=state))],
    )


@asynccontextmanager
async def writes_blocked(database_url: str) -> AsyncIterator[None]:
    """Another client holds the database's write lock, so the store cannot write (PostgreSQL: its
    transaction waits on log_positions; SQLite: "database is locked") while reads go on."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute("LOCK TABLE log_positions IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await conn.rollback()


async def test_a_logged_order_is_in_the_very_first_answer(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    """Read your writes: an order acknowledged by Kafka is in the store's first answer about it,
    with no retry, round after round."""
    async with (
        running_store(store_config(database_url, kafka_bootstrap, topics)) as (_, stub),
        kafka_producer(kafka_bootstrap) as producer,
    ):
        await producer.send_and_wait(topics["events"], LOG[0].SerializeToString())  # ACME
        for round_ in range(FRESH_ROUNDS):
            at = T1 + round_ * SECOND
            looked_up, listed_first = f"get-{round_}", f"list-{round_}"

            await producer.send_and_wait(
                topics["events"], placed(looked_up, "erin", at).SerializeToString()
            )
            order = await stored(stub, looked_up)
            assert order is not None and order.status == types_pb2.NEW, f"round {round_}"

            await producer.send_and_wait(
                topics["events"], placed(listed_first, "erin", at + 1).SerializeToString()
            )
            erin = await stub.ListUserOrders(store_pb2.ListUserOrdersRequest(user_id="erin"))
            assert [order.order_id for order in erin.orders[:2]] == [listed_first, looked_up]
            assert len(erin.orders) == 2 * (round_ + 1)


async def test_an_answer_the_store_cannot_make_fresh_is_unavailable_within_the_bound(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    """The database refuses the store's writes: a query about a newer record waits at most the
    freshness timeout, then UNAVAILABLE, never the stale answer; once writes go through again,
    the next answer holds the record."""
    bound = 1.0
    config = store_config(database_url, kafka_bootstrap, topics, freshness_timeout=bound)
    async with running_store(config) as (_, stub):
        await produce(kafka_bootstrap, topics["events"], [LOG[0], placed("before", "erin", T1)])
        assert await stored(stub, "before") is not None

        async with writes_blocked(database_url):
            await produce(kafka_bootstrap, topics["events"], [placed("blocked", "erin", T2)])
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as behind:
                await stored(stub, "blocked")
            waited = time.monotonic() - started
            assert behind.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "catching up with the exchange" in behind.value.details()
            assert bound <= waited < bound + 1.0
            with pytest.raises(grpc.aio.AioRpcError) as listing:
                await stub.ListUserOrders(store_pb2.ListUserOrdersRequest(user_id="erin"))
            assert listing.value.code() == grpc.StatusCode.UNAVAILABLE

        order = await stored(stub, "blocked")
        assert order is not None and order.order_id == "blocked"


async def test_a_refused_create_account_leaves_no_users_row(
    database_url: str, kafka_bootstrap: str, topics: dict[str, str]
):
    """Two admins race to create carol: the engine opens the first account and refuses the second
    (CommandRefused, no AccountCreated), whose key and admin flag must not be stored."""

    def create(user_id: str, key_sha: str, admin: bool) -> engine_pb2.EngineCommand:
        return command(
            f"user-{user_id}-{key_sha[:2]}",
            T1,
            create_account=engine_pb2.CreateAccountCommand(
                user_id=user_id, cash_units=100_000_000, api_key_sha256=key_sha, admin=admin
            ),
        )

    def refused(user_id: str, reason: int, message: str) -> engine_pb2.EngineEvent:
        return engine_pb2.EngineEvent(
            timestamp_ns=T1,
            command_refused=engine_pb2.CommandRefused(
                reason=reason, message=message, user_id=user_id
            ),
        )

    batches = [
        engine_pb2.EngineBatch(
            command=create("carol", CAROL_KEY_SHA, admin=False),
            events=[account_created(1, "carol", CAROL_KEY_SHA, cash_units=100_000_000)],
        ),
        engine_pb2.EngineBatch(
            command=create("carol", RIVAL_KEY_SHA, admin=True),
            events=[
                refused(
                    "carol", engine_pb2.REFUSAL_REASON_ACCOUNT_EXISTS, "userId carol already exists"
                )
            ],
        ),
        engine_pb2.EngineBatch(
            command=create("dave", RIVAL_KEY_SHA, admin=True),
            events=[
                refused("dave", engine_pb2.REFUSAL_REASON_INVALID_ARGUMENT, "cash must be >= 0")
            ],
        ),
    ]
    async with running_store(store_config(database_url, kafka_bootstrap, topics)) as (_, stub):
        await produce(kafka_bootstrap, topics["events"], batches)
        # Any answer holds the whole log as it stood: after it, the rows are all written.
        await stub.ListUserOrders(store_pb2.ListUserOrdersRequest(user_id="carol"))
        dump = await table_dump(database_url)

    assert dump["users"] == [("carol", False, CAROL_KEY_SHA)]


async def test_readiness_follows_the_database_and_the_store_carries_on(
    postgres_server: PostgresServer, kafka_bootstrap: str, topics: dict[str, str]
):
    """PostgreSQL crashes (an immediate stop) under a running store and comes back: meanwhile
    readiness is NOT_SERVING, liveness SERVING and answers UNAVAILABLE; after, the store writes
    what the log got meanwhile and answers it, with no restart."""
    config = store_config(
        await new_database(postgres_server), kafka_bootstrap, topics, freshness_timeout=1.0
    )
    async with (
        running_store(config) as (app, stub),
        grpc.aio.insecure_channel(app.grpc_address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        await produce(kafka_bootstrap, topics["events"], [LOG[0], placed("o1", "erin", T1)])
        assert await stored(stub, "o1") is not None
        assert await health_of(health, "") == SERVING

        postgres_server.stop("immediate")
        try:
            await until_ready_is(health, NOT_SERVING, within=5)
            assert await health_of(health, "liveness") == SERVING
            await produce(kafka_bootstrap, topics["events"], [placed("o2", "erin", T2)])
            with pytest.raises(grpc.aio.AioRpcError) as away:
                await stored(stub, "o2")
            assert away.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            postgres_server.start()

        await until_ready_is(health, SERVING, within=15)
        order = await stored(stub, "o2")
        assert order is not None and order.order_id == "o2"
        assert app.consumer is not None and app.consumer.task is not None
        assert not app.consumer.task.done()
