"""store_svc against a real Kafka broker and a real database (an SQLite file, and PostgreSQL when
it is installed): what the engine logs is what the store answers, exactly once, across replays
and restarts.

The engine's log is written by hand here (EngineBatch messages as the engine emits them), so the
expected answers are known exactly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
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
from sqlalchemy import func, select

from exchange.internal.v1 import engine_pb2, store_pb2, store_pb2_grpc
from exchange.v1 import types_pb2
from mockex import processes
from mockex.convert import public_order, timestamp
from store_svc import db
from store_svc.app import StoreApp
from store_svc.config import StoreConfig

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30.0
SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
ALICE_KEY_SHA = "a1" * 32
BOB_KEY_SHA = "b0" * 32


# ---- a throwaway PostgreSQL server ----------------------------------------------------------

def _initdb() -> Path | None:
    """The newest installed PostgreSQL's initdb (Debian layout), or None."""
    found = [
        path for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if path.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda path: int(path.parent.parent.name), default=None)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """postgresql+psycopg://postgres@127.0.0.1:PORT of a server of its own, in a temporary folder.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` OS user; the folder
    is made outside pytest's tmp_path because that one is private to root.
    """
    initdb = _initdb()
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                    "run scripts/install-postgres.sh")
    pg_ctl = str(initdb.parent / "pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="mockex-postgres-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = processes.free_port()
    try:
        _run([*as_postgres, str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--no-sync"])
        _run([*as_postgres, pg_ctl, "-D", str(data), "-l", str(root / "postgres.log"), "-w",
              "-t", "60", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
              "start"])
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            _run([*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database for the test."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'store.db'}"
    server: str = request.getfixturevalue("postgres_server")
    name = f"store_{uuid.uuid4().hex[:12]}"
    admin_dsn = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


# ---- the engine's log, by hand -------------------------------------------------------------

def order_state(order_id: str, user_id: str, side: int, price_ticks: int, quantity: int,
                status: int, created_ns: int, updated_ns: int, filled: int = 0,
                reason: int = 0) -> engine_pb2.OrderState:
    return engine_pb2.OrderState(
        order_id=order_id, user_id=user_id, symbol="ACME", side=side, type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD, price_ticks=price_ticks, quantity=quantity,
        filled_quantity=filled, filled_notional_ticks=filled * 10125, status=status,
        reason=reason, client_order_id=f"client-{order_id}", created_ns=created_ns,
        updated_ns=updated_ns,
    )


def event(sequence: int, at: int, **kind: Any) -> engine_pb2.EngineEvent:
    return engine_pb2.EngineEvent(symbol="ACME", sequence=sequence, timestamp_ns=at, **kind)


def command(command_id: str, at: int, **kind: Any) -> engine_pb2.EngineCommand:
    return engine_pb2.EngineCommand(command_id=command_id, timestamp_ns=at, **kind)


def level(side: int, price_ticks: int, quantity: int, orders: int) -> engine_pb2.BookLevelChanged:
    return engine_pb2.BookLevelChanged(
        side=side, price_ticks=price_ticks, quantity=quantity, order_count=orders
    )


T1, T2, T3, T4, T5 = (T0 + n * SECOND for n in range(1, 6))
# alice rests SELL 10 @ 101.25 (o1); bob's BUY 4 @ 101.30 (o2) takes 4 of it (trade t1);
# alice cancels the rest of o1; bob rests BUY 1 @ 100.00 (o3).
O1_NEW = order_state("o1", "alice", types_pb2.SELL, 10125, 10, types_pb2.NEW, T1, T1)
O1_PARTIAL = order_state("o1", "alice", types_pb2.SELL, 10125, 10, types_pb2.PARTIALLY_FILLED,
                         T1, T2, filled=4)
O1_CANCELLED = order_state("o1", "alice", types_pb2.SELL, 10125, 10, types_pb2.CANCELLED, T1, T3,
                           filled=4, reason=types_pb2.CANCELLED_BY_OWNER)
O2_NEW = order_state("o2", "bob", types_pb2.BUY, 10130, 4, types_pb2.NEW, T2, T2)
O2_FILLED = order_state("o2", "bob", types_pb2.BUY, 10130, 4, types_pb2.FILLED, T2, T2, filled=4)
O3_NEW = order_state("o3", "bob", types_pb2.BUY, 10000, 1, types_pb2.NEW, T4, T4)
# After the restart: alice's BUY of 1000 @ 101.25 (o4) is rejected.
O4_REJECTED = order_state("o4", "alice", types_pb2.BUY, 10125, 1000, types_pb2.REJECTED, T5, T5,
                          reason=types_pb2.INSUFFICIENT_CASH)

LOG = [
    engine_pb2.EngineBatch(
        command=command("add-ACME", T0, add_symbol=engine_pb2.AddSymbolCommand(
            symbol="ACME", tick_size="0.01", lot_size=1)),
        events=[event(1, T0, symbol_added=engine_pb2.SymbolAdded(tick_size="0.01", lot_size=1))],
        stream_id="1-0",
    ),
    engine_pb2.EngineBatch(
        command=command("user-alice", T0, create_account=engine_pb2.CreateAccountCommand(
            user_id="alice", cash_units=100_000_000, positions={"ACME": 10},
            api_key_sha256=ALICE_KEY_SHA)),
        stream_id="2-0",
    ),
    engine_pb2.EngineBatch(
        command=command("user-bob", T0, create_account=engine_pb2.CreateAccountCommand(
            user_id="bob", cash_units=100_000_000, api_key_sha256=BOB_KEY_SHA, admin=True)),
        stream_id="3-0",
    ),
    engine_pb2.EngineBatch(
        command=command("o1", T1, place_order=engine_pb2.PlaceOrderCommand(
            order_id="o1", user_id="alice", symbol="ACME", side=types_pb2.SELL,
            type=types_pb2.LIMIT, time_in_force=types_pb2.GFD, price_ticks=10125, quantity=10,
            client_order_id="client-o1")),
        events=[
            event(2, T1, order_accepted=engine_pb2.OrderAccepted(order=O1_NEW)),
            event(3, T1, book_level_changed=level(types_pb2.SELL, 10125, 10, 1)),
        ],
        stream_id="4-0",
    ),
    engine_pb2.EngineBatch(
        command=command("o2", T2, place_order=engine_pb2.PlaceOrderCommand(
            order_id="o2", user_id="bob", symbol="ACME", side=types_pb2.BUY,
            type=types_pb2.LIMIT, time_in_force=types_pb2.GFD, price_ticks=10130, quantity=4,
            client_order_id="client-o2")),
        events=[
            event(4, T2, order_accepted=engine_pb2.OrderAccepted(order=O2_NEW)),
            event(5, T2, trade_executed=engine_pb2.TradeExecuted(
                trade_id="t1", price_ticks=10125, quantity=4, aggressor_side=types_pb2.BUY,
                buy_order_id="o2", sell_order_id="o1", buyer_id="bob", seller_id="alice")),
            event(6, T2, order_filled=engine_pb2.OrderFilled(
                order=O1_PARTIAL, trade_id="t1", price_ticks=10125, quantity=4)),
            event(7, T2, order_filled=engine_pb2.OrderFilled(
                order=O2_FILLED, trade_id="t1", price_ticks=10125, quantity=4)),
            event(8, T2, book_level_changed=level(types_pb2.SELL, 10125, 6, 1)),
        ],
        stream_id="5-0",
    ),
    engine_pb2.EngineBatch(
        command=command("o1", T3, cancel_order=engine_pb2.CancelOrderCommand(
            order_id="o1", user_id="alice")),
        events=[
            event(9, T3, order_cancelled=engine_pb2.OrderCancelled(order=O1_CANCELLED)),
            event(10, T3, book_level_changed=level(types_pb2.SELL, 10125, 0, 0)),
        ],
        stream_id="6-0",
    ),
    engine_pb2.EngineBatch(
        command=command("o3", T4, place_order=engine_pb2.PlaceOrderCommand(
            order_id="o3", user_id="bob", symbol="ACME", side=types_pb2.BUY,
            type=types_pb2.LIMIT, time_in_force=types_pb2.GFD, price_ticks=10000, quantity=1,
            client_order_id="client-o3")),
        events=[
            event(11, T4, order_accepted=engine_pb2.OrderAccepted(order=O3_NEW)),
            event(12, T4, book_level_changed=level(types_pb2.BUY, 10000, 1, 1)),
        ],
        stream_id="7-0",
    ),
]
SNAPSHOT = engine_pb2.EngineSnapshot(
    log_offset=len(LOG) - 1, last_stream_id="7-0", timestamp_ns=T4, market_open=True,
    symbols=[engine_pb2.SymbolSnapshot(symbol="ACME", tick_size="0.01", lot_size=1, sequence=12,
                                       trade_count=1, last_ticks=10125, last_quantity=4, volume=4,
                                       open_ticks=10125, high_ticks=10125, low_ticks=10125)],
    open_orders=[engine_pb2.RestingOrder(order=O3_NEW, reserved_cash_units=1_000_000)],
    users=[engine_pb2.UserRecord(user_id="alice", api_key_sha256=ALICE_KEY_SHA),
           engine_pb2.UserRecord(user_id="bob", admin=True, api_key_sha256=BOB_KEY_SHA)],
)
AFTER_RESTART = engine_pb2.EngineBatch(
    command=command("o4", T5, place_order=engine_pb2.PlaceOrderCommand(
        order_id="o4", user_id="alice", symbol="ACME", side=types_pb2.BUY, type=types_pb2.LIMIT,
        time_in_force=types_pb2.GFD, price_ticks=10125, quantity=1000,
        client_order_id="client-o4")),
    events=[event(13, T5, order_rejected=engine_pb2.OrderRejected(order=O4_REJECTED))],
    stream_id="8-0",
)
GLOBX_LISTED = engine_pb2.EngineBatch(
    command=command("add-GLOBX", T5, add_symbol=engine_pb2.AddSymbolCommand(
        symbol="GLOBX", tick_size="0.05", lot_size=10)),
    events=[engine_pb2.EngineEvent(symbol="GLOBX", sequence=1, timestamp_ns=T5,
                                   symbol_added=engine_pb2.SymbolAdded(tick_size="0.05",
                                                                       lot_size=10))],
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
    trade_id="t1", price=101.25, quantity=4, aggressor_side=types_pb2.BUY,
    timestamp=timestamp(T2), sequence=5, symbol="ACME",
)
EXPECTED_ROW_COUNTS = {
    "symbols": 1, "users": 2, "orders": 3, "fills": 2, "trades": 1, "snapshots": 1
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


def store_config(database_url: str, bootstrap: str, topics: dict[str, str]) -> StoreConfig:
    return StoreConfig(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        events_topic=topics["events"],
        snapshots_topic=topics["snapshots"],
        grpc_address="127.0.0.1:0",
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
    assert (o1.status, o1.status_reason, o1.filled_quantity, o1.remaining_quantity,
            o1.avg_fill_price, o1.price) == (
        types_pb2.CANCELLED, "CANCELLED_BY_OWNER", 4, 0, 101.25, 101.25)
    assert found["alice:"] == found["alice:closed"] == [EXPECTED_ORDERS["o1"]]
    assert found["alice:open"] == []
    assert found["bob:"] == [EXPECTED_ORDERS["o3"], EXPECTED_ORDERS["o2"]]
    assert found["bob:open"] == [EXPECTED_ORDERS["o3"]]
    assert found["bob:closed"] == [EXPECTED_ORDERS["o2"]]
    assert found["trades"] == [EXPECTED_TRADE]
    assert found["candles:1s"] == [types_pb2.Candle(
        start=timestamp(T2), open=101.25, high=101.25, low=101.25, close=101.25, volume=4)]
    assert found["candles:1m"] == [types_pb2.Candle(
        start=timestamp(T0), open=101.25, high=101.25, low=101.25, close=101.25, volume=4)]

    dump = await table_dump(database_url)
    assert dump["symbols"] == [("ACME", "0.01", 1)]
    assert dump["users"] == [("alice", False, ALICE_KEY_SHA), ("bob", True, BOB_KEY_SHA)]
    assert dump["trades"] == [
        ("t1", "ACME", 10125, 4, "BUY", "o2", "o1", "bob", "alice", T2, 5)
    ]
    assert dump["fills"] == [("o1", "t1", 10125, 4, T2, 6), ("o2", "t1", 10125, 4, T2, 7)]
    assert [(row[0], row[10], row[16]) for row in dump["orders"]] == [
        ("o1", "CANCELLED", 0), ("o2", "FILLED", 3), ("o3", "NEW", 0)
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
    assert await row_counts(database_url) == {**EXPECTED_ROW_COUNTS, "orders": 4}
