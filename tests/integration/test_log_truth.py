"""The log decides everything: a replay must reproduce it byte for byte, settings live in it, and
two admins racing for one user id get one account.

The engine runs as a real process on copies of a real log (Kafka topics of its own), so each
test can alter what it replays: a tampered event, an older rules version, a changed setting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from engine_svc.rules import RULES_VERSION
from exchange.internal.v1 import engine_pb2
from exchange.v1 import admin_pb2
from mockex import names, processes
from mockex.auth import hash_api_key
from mockex.stack import ExchangeStack, wait_serving
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.exchange_client import Exchange, eventually
from tests.integration.test_order_path import read_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    with running_stack(kafka_bootstrap, tmp_path_factory.mktemp("truth"), {}) as stack:
        yield stack


@pytest.fixture(scope="module")
async def logged(stack: ExchangeStack) -> list[engine_pb2.EngineBatch]:
    """A log with listings, accounts, trades and a cancel, then the engine stopped."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol(reference_price=50.0)
        seller = await exchange.participant(positions={symbol: 100})
        buyer = await exchange.participant()
        resting = await seller.place(symbol, "SELL", 10, 50.5)
        await buyer.place(symbol, "BUY", 4, 51.0)
        await buyer.place(symbol, "BUY", 3, 50.5, tif="IOC")
        await seller.cancel(resting.order_id)
    return await read_log(stack)


async def copy_log(stack: ExchangeStack, batches: list[engine_pb2.EngineBatch]) -> str:
    """The batches as a new events topic (an empty snapshots topic beside it); its suffix."""
    suffix = f".{uuid.uuid4().hex[:8]}"
    events, snapshots = names.EVENTS_TOPIC + suffix, names.SNAPSHOTS_TOPIC + suffix
    await processes.create_topics(stack.kafka_bootstrap, [events, snapshots])
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", max_request_size=names.MAX_RECORD_BYTES
    )
    await producer.start()
    try:
        for batch in batches:
            await producer.send_and_wait(events, batch.SerializeToString(), partition=0)
    finally:
        await producer.stop()
    return suffix


def engine_on(
    stack: ExchangeStack, suffix: str, log_dir: Path, **env: str
) -> processes.ManagedProcess:
    """An engine process on the log copy `suffix`, with a Redis database of its own."""
    service_env = {
        **stack.service_env(),
        "MOCKEX_EVENTS_TOPIC": names.EVENTS_TOPIC + suffix,
        "MOCKEX_SNAPSHOTS_TOPIC": names.SNAPSHOTS_TOPIC + suffix,
        "MOCKEX_REDIS_URL": stack.redis_database_url(3),
        "MOCKEX_ENGINE_GRPC_ADDRESS": f"127.0.0.1:{processes.free_port()}",
        **env,
    }
    return processes.service_process("engine", "engine_svc", service_env, log_dir).start()


def engine_port(process: processes.ManagedProcess) -> int:
    return int(process.env["MOCKEX_ENGINE_GRPC_ADDRESS"].rsplit(":", 1)[1])


def wait_exit(process: processes.ManagedProcess, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while process.alive():
        assert time.monotonic() < deadline, f"engine still running:\n{process.tail()}"
        time.sleep(0.1)
    return process.returncode


async def test_a_tampered_event_stops_the_start_naming_its_offset(
    stack: ExchangeStack, logged: list[engine_pb2.EngineBatch], tmp_path: Path
) -> None:
    tampered = [engine_pb2.EngineBatch.FromString(b.SerializeToString()) for b in logged]
    offset = next(
        i
        for i, batch in enumerate(tampered)
        if any(e.WhichOneof("event") == "trade_executed" for e in batch.events)
    )
    trade = next(e for e in tampered[offset].events if e.WhichOneof("event") == "trade_executed")
    trade.trade_executed.price_ticks += 1
    suffix = await copy_log(stack, tampered)

    engine = engine_on(stack, suffix, tmp_path)
    code = await asyncio.get_running_loop().run_in_executor(None, wait_exit, engine)

    assert code != 0
    log = engine.tail(200)
    assert f"offset {offset} differs from the log" in log, log


async def test_a_replay_of_an_untouched_log_starts_and_serves(
    stack: ExchangeStack, logged: list[engine_pb2.EngineBatch], tmp_path: Path
) -> None:
    suffix = await copy_log(stack, logged)
    engine = engine_on(stack, suffix, tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, wait_serving, engine, engine_port(engine), 60
        )
        assert "unchecked_older_rules=0" in engine.tail(200)
    finally:
        engine.stop()
    # Nothing was added: the settings in the log are what this start brings.
    assert len(await read_log_copy(stack, suffix)) == len(logged)


async def test_a_log_of_older_rules_is_replayed_unchecked_and_the_new_version_logged(
    stack: ExchangeStack, logged: list[engine_pb2.EngineBatch], tmp_path: Path
) -> None:
    older = [engine_pb2.EngineBatch.FromString(b.SerializeToString()) for b in logged]
    configure = older[0]
    assert configure.command.WhichOneof("command") == "configure_exchange"
    configure.command.configure_exchange.settings.rules_version = RULES_VERSION - 1
    configure.events[0].settings_changed.settings.rules_version = RULES_VERSION - 1
    # Under the older rules a trade printed at another price: not compared, not refused.
    for batch in older:
        for event in batch.events:
            if event.WhichOneof("event") == "trade_executed":
                event.trade_executed.price_ticks += 1
    suffix = await copy_log(stack, older)

    engine = engine_on(stack, suffix, tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, wait_serving, engine, engine_port(engine), 60
        )
    finally:
        engine.stop()
    replayed = await read_log_copy(stack, suffix)
    assert len(replayed) == len(older) + 1
    changed = replayed[-1].events[0].settings_changed
    assert (changed.previous.rules_version, changed.settings.rules_version) == (
        RULES_VERSION - 1,
        RULES_VERSION,
    )
    assert f"unchecked_older_rules={len(older)}" in engine.tail(200)


async def test_a_changed_setting_at_restart_is_logged_and_an_unset_one_keeps_the_log(
    stack: ExchangeStack, logged: list[engine_pb2.EngineBatch], tmp_path: Path
) -> None:
    suffix = await copy_log(stack, logged)
    loop = asyncio.get_running_loop()

    async def run_engine(**env: str) -> str:
        engine = engine_on(stack, suffix, tmp_path, **env)
        try:
            await loop.run_in_executor(None, wait_serving, engine, engine_port(engine), 60)
        finally:
            engine.stop()
        return engine.tail(300)

    await run_engine(MOCKEX_SHORT_LIMIT="7", MOCKEX_MAX_OPEN_ORDERS="3")
    after_change = await read_log_copy(stack, suffix)
    assert len(after_change) == len(logged) + 1
    (event,) = after_change[-1].events
    changed = event.settings_changed
    assert (changed.previous.short_limit, changed.settings.short_limit) == (0, 7)
    assert (changed.previous.max_open_orders, changed.settings.max_open_orders) == (0, 3)
    assert event.exchange_sequence > 0

    # Unset: the log's value stands. The opening state of an existing log is the log's.
    tail = await run_engine(MOCKEX_MARKET_OPEN="0")
    assert len(await read_log_copy(stack, suffix)) == len(after_change)
    assert "MOCKEX_MARKET_OPEN=0 ignored: the log says the market is open" in tail


async def read_log_copy(stack: ExchangeStack, suffix: str) -> list[engine_pb2.EngineBatch]:
    copy = ExchangeStack(
        data_dir=stack.data_dir, admin_key=ADMIN_KEY, ports=stack.ports, topic_suffix=suffix
    )
    return await read_log(copy)


async def test_racing_create_user_gives_one_account_and_one_key(stack: ExchangeStack) -> None:
    user_id = "race" + uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)

        async def create() -> admin_pb2.CreateUserResponse | grpc.aio.AioRpcError:
            try:
                return await exchange.admin.CreateUser(
                    admin_pb2.CreateUserRequest(user_id=user_id, cash=1000),
                    metadata=exchange.admin_metadata,
                    timeout=15,
                )
            except grpc.aio.AioRpcError as exc:
                return exc

        answers = await asyncio.gather(*(create() for _ in range(6)))
    created = [a for a in answers if isinstance(a, admin_pb2.CreateUserResponse)]
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert {error.code() for error in refused} == {grpc.StatusCode.ALREADY_EXISTS}
    assert all(user_id in error.details() for error in refused)

    redis = Redis.from_url(stack.redis_url)
    try:
        records = [
            engine_pb2.UserRecord.FromString(raw)
            for raw in (await redis.hgetall(names.USERS_KEY)).values()
        ]
    finally:
        await redis.aclose()
    assert [r.api_key_sha256 for r in records if r.user_id == user_id] == [
        hash_api_key(created[0].api_key)
    ]

    async def logged_once() -> bool:
        batches = await read_log(stack)
        accounts = [
            e
            for b in batches
            for e in b.events
            if e.WhichOneof("event") == "account_created" and e.account_created.user_id == user_id
        ]
        refusals = [
            e
            for b in batches
            for e in b.events
            if e.WhichOneof("event") == "command_refused" and e.command_refused.user_id == user_id
        ]
        return len(accounts) == 1 and len(refusals) == len(refused)

    await eventually(logged_once, what="one AccountCreated and the refusals in the log")
