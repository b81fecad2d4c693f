"""Faults under a steady flow of traders who retry with their clientOrderId, as SPEC.md says is
safe: Redis killed (and restarted empty) again and again, Kafka killed and frozen, the gateway
killed, and the whole stack stopped and started on the same data.

The stack has a broker and a Redis of its own and runs under the real supervisor
(mockex.supervisor), which restarts what dies. After each fault the exchange must be SERVING
again by itself within 30 s of the dependency's return, and at the end: every acknowledged
order is in the log exactly once, in a state the log holds for it; every retry got the first
order back; every order answered DEADLINE_EXCEEDED ("queued") was executed exactly once; and
the public reads are the same after a restart as before it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from exchange.v1 import (
    accounts_pb2,
    market_pb2,
    orders_pb2,
    types_pb2,
)
from mockex import names
from mockex.processes import port_open
from mockex.stack import SERVICES, ExchangeStack, StackPorts
from mockex.supervisor import Backoff, Supervisor
from tests.integration.conftest import ADMIN_KEY
from tests.integration.exchange_client import Exchange, Participant, eventually
from tests.integration.test_order_path import read_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECOVERY_SECONDS = 30.0
RETRIED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
)
ORDER_ID_IN_MESSAGE = re.compile(r"orderId (\w+)")
ENV = {
    "MOCKEX_SNAPSHOT_EVERY": "300",
    "MOCKEX_ENGINE_TIMEOUT_SECONDS": "2",
    "MOCKEX_RATE_LIMIT_PER_SECOND": "0",
}


@dataclass
class Stack:
    """One exchange on fixed free ports and one data directory, restartable as a whole."""

    data_dir: Path
    ports: StackPorts = field(default_factory=StackPorts.free)
    suffix: str = field(default_factory=lambda: f".{uuid.uuid4().hex[:8]}")
    exchange: ExchangeStack | None = None
    supervisor: Supervisor | None = None

    def start(self) -> None:
        self.exchange = ExchangeStack(
            data_dir=self.data_dir,
            admin_key=ADMIN_KEY,
            ports=self.ports,
            topic_suffix=self.suffix,
            extra_env=ENV,
        )
        self.exchange.start_infrastructure()
        self.exchange.start_services()
        self.supervisor = Supervisor(
            self.exchange, Backoff(first=0.2, maximum=2.0, reset_after=5.0), log=lambda _: None
        )
        self.supervisor.start()

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.supervisor = None

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports.gateway}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("faults"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# ---- the traders --------------------------------------------------------------------------


@dataclass
class Record:
    """What the traders were told."""

    answers: dict[tuple[str, str], list[types_pb2.Order]] = field(default_factory=dict)
    """(user, clientOrderId) -> every order answered for it (first try and retries)."""
    queued: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(user, clientOrderId) -> order ids named by a DEADLINE_EXCEEDED answer."""
    refusals: dict[str, int] = field(default_factory=dict)
    """Refused tries by status code name (each was retried)."""

    def acknowledged(self) -> dict[str, types_pb2.Order]:
        return {order.order_id: order for orders in self.answers.values() for order in orders}


async def place_until_answered(
    trader: Participant, request: orders_pb2.PlaceOrderRequest, record: Record
) -> types_pb2.Order:
    """Send the same request (same clientOrderId) until the exchange answers it."""
    key = (trader.user_id, request.client_order_id)
    while True:
        try:
            answer = await trader.orders.PlaceOrder(request, metadata=trader.metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRIED:
                raise
            record.refusals[exc.code().name] = record.refusals.get(exc.code().name, 0) + 1
            named = ORDER_ID_IN_MESSAGE.search(exc.details() or "")
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and named:
                record.queued.setdefault(key, set()).add(named.group(1))
            await asyncio.sleep(random.uniform(0.05, 0.2))
            continue
        record.answers.setdefault(key, []).append(answer.order)
        return answer.order


async def trade(
    trader: Participant, symbol: str, record: Record, stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        kind = rng.random()
        side = types_pb2.BUY if rng.random() < 0.5 else types_pb2.SELL
        request = orders_pb2.PlaceOrderRequest(
            symbol=symbol,
            side=side,
            quantity=rng.randint(1, 10),
            price=rng.randint(96, 104) * 0.5,
            type=types_pb2.LIMIT,
            time_in_force=types_pb2.IOC if kind < 0.4 else types_pb2.GFD,
            client_order_id=f"{seed}-{uuid.uuid4().hex[:12]}",
        )
        await place_until_answered(trader, request, record)
        await asyncio.sleep(rng.uniform(0.0, 0.02))


class Flow:
    """Traders trading until stopped."""

    def __init__(self, traders: list[Participant], symbol: str, record: Record) -> None:
        self.stop = asyncio.Event()
        self.tasks = [
            asyncio.create_task(trade(trader, symbol, record, self.stop, seed))
            for seed, trader in enumerate(traders, start=1)
        ]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


# ---- health ---------------------------------------------------------------------------------


def _health(port: int, service: str = "") -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def all_serving(stack: Stack) -> bool:
    ports = stack.ports
    return all(_health(getattr(ports, name)) for name in SERVICES) and _healthz(ports.edge)


async def serving_again(stack: Stack, what: str) -> float:
    """Seconds until every service's readiness and /healthz say SERVING (at most 30)."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    while not await loop.run_in_executor(None, all_serving, stack):
        elapsed = time.monotonic() - started
        assert elapsed < RECOVERY_SECONDS, f"not SERVING {elapsed:.0f}s after {what}"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def redis_back(stack: Stack) -> None:
    assert stack.exchange is not None
    url = stack.exchange.redis_url

    async def answers() -> bool:
        """True once the restarted Redis answers; it must take the same password."""
        client = Redis.from_url(url, socket_timeout=1)
        try:
            return bool(await client.ping())
        except AuthenticationError:
            raise
        except (OSError, RedisConnectionError):
            return False
        finally:
            await client.aclose()

    await eventually(answers, timeout=RECOVERY_SECONDS, what="redis to be restarted")


def kill(stack: Stack, name: str) -> None:
    assert stack.exchange is not None
    stack.exchange.processes[name].kill()


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def restarted(stack: Stack, name: str, old_pid: int) -> bool:
    assert stack.exchange is not None
    process = stack.exchange.processes.get(name)
    return process is not None and process.pid != old_pid and process.alive()


# ---- public reads ---------------------------------------------------------------------------


async def public_reads(stack: Stack, traders: list[Participant], symbol: str) -> dict:
    """Everything a participant can read, as comparable values: the leaderboard without its
    `timestamp` (the time of the read) and without the figures sampled once a minute of log
    time (max drawdown, sharpe), which any command after a minute's boundary moves on."""
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        reader = Participant(channel, "reader", traders[0].api_key)
        book = (
            await reader.book.GetOrderBook(
                market_pb2.GetOrderBookRequest(symbol=symbol), timeout=10
            )
        ).book
        quote = (
            await reader.book.GetQuote(market_pb2.GetQuoteRequest(symbol=symbol), timeout=10)
        ).quote
        trades = (
            await reader.trades.ListTrades(
                market_pb2.ListTradesRequest(symbol=symbol, limit=1000), timeout=10
            )
        ).trades
        board = await reader.accounts.GetLeaderboard(
            accounts_pb2.GetLeaderboardRequest(), timeout=10
        )
        for entry in board.entries:
            entry.ClearField("max_drawdown")
            entry.ClearField("sharpe")
        reads: dict = {
            "book": book.SerializeToString(deterministic=True),
            "quote": quote.SerializeToString(deterministic=True),
            "trades": [trade.SerializeToString(deterministic=True) for trade in trades],
            "leaderboard": [entry.SerializeToString() for entry in board.entries],
        }
        for trader in traders:
            own = Participant(channel, trader.user_id, trader.api_key)
            account = await own.account()
            orders = await own.orders.ListOrders(
                orders_pb2.ListOrdersRequest(), metadata=own.metadata, timeout=10
            )
            reads[trader.user_id] = {
                "account": account.SerializeToString(deterministic=True),
                "orders": [order.SerializeToString(deterministic=True) for order in orders.orders],
            }
        return reads


async def engine_drained(stack: Stack) -> None:
    assert stack.exchange is not None
    redis = Redis.from_url(stack.exchange.redis_url)
    try:

        async def drained() -> bool:
            groups = await redis.xinfo_groups(names.COMMANDS_STREAM)
            group = next(g for g in groups if g["name"] == names.ENGINE_GROUP.encode())
            return group["pending"] == 0 and group.get("lag", 0) == 0

        await eventually(drained, what="the engine to take every queued command")
    finally:
        await redis.aclose()


# ---- the test -------------------------------------------------------------------------------


@pytest.mark.timeout(480)
async def test_faults_heal_by_themselves_and_lose_or_double_nothing(stack: Stack) -> None:
    started = time.monotonic()

    def phase(text: str) -> None:
        print(f"[faults +{time.monotonic() - started:5.1f}s] {text}", flush=True)

    record = Record()
    recoveries: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol(reference_price=25.0)
        traders = [
            await exchange.participant(cash=1_000_000, positions={symbol: 5_000}) for _ in range(4)
        ]
        traders = [Participant(channel, t.user_id, t.api_key) for t in traders]
        flow = Flow(traders, symbol, record)

        # Redis killed and restarted empty (by the supervisor), five times, under the flow.
        for attempt in range(5):
            phase(f"redis kill -9 #{attempt + 1}")
            await asyncio.sleep(random.uniform(0.8, 1.5))
            kill(stack, "redis")
            await redis_back(stack)
            recoveries.setdefault("redis kill -9", []).append(
                await serving_again(stack, "redis came back")
            )

        # Kafka killed: the supervisor restarts it on the same data.
        await asyncio.sleep(1.0)
        phase("kafka kill -9")
        old = stack.exchange.processes["kafka"].pid
        kill(stack, "kafka")
        await until(
            lambda: restarted(stack, "kafka", old) and port_open(stack.ports.kafka),
            90,
            "kafka restarted",
        )
        recoveries["kafka kill -9"] = [await serving_again(stack, "kafka came back")]

        # Kafka frozen for 10 s: writes wait, the engine reports NOT_SERVING meanwhile.
        await asyncio.sleep(1.0)
        phase("kafka SIGSTOP 10 s")
        kafka = stack.exchange.processes["kafka"]
        os.killpg(kafka.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(10)
        finally:
            os.killpg(kafka.pid, signal.SIGCONT)
        recoveries["kafka SIGSTOP 10 s"] = [await serving_again(stack, "kafka resumed")]

        # The gateway killed: clients see UNAVAILABLE and retry; the supervisor restarts it.
        await asyncio.sleep(1.0)
        phase("gateway kill -9")
        old = stack.exchange.processes["gateway"].pid
        kill(stack, "gateway")
        await until(lambda: restarted(stack, "gateway", old), 30, "gateway restarted")
        recoveries["gateway kill -9"] = [await serving_again(stack, "gateway came back")]

        await asyncio.sleep(1.0)
        await flow.finish()
        await engine_drained(stack)

    # Quiet market: reads before and after a Redis loss and a whole-stack restart are equal.
    phase("quiet: redis kill -9, reads before and after")
    before = await public_reads(stack, traders, symbol)
    kill(stack, "redis")
    await redis_back(stack)
    recoveries["redis kill -9 (quiet)"] = [await serving_again(stack, "redis came back")]
    assert await public_reads(stack, traders, symbol) == before

    phase("whole stack stopped and started on the same data")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, stack.stop)
    phase("stopped; starting")
    await loop.run_in_executor(None, stack.start)
    recoveries["whole stack restart"] = [await serving_again(stack, "the stack was started")]
    assert await public_reads(stack, traders, symbol) == before

    # After the restart, a retry of every clientOrderId still gets the first order back.
    phase("retries of earlier clientOrderIds")
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        by_user = {t.user_id: Participant(channel, t.user_id, t.api_key) for t in traders}

        async def retry_all(user_id: str) -> None:
            for (user, client_order_id), answers in list(record.answers.items())[::5]:
                if user != user_id:
                    continue
                first = answers[0]
                request = orders_pb2.PlaceOrderRequest(
                    symbol=symbol,
                    side=first.side,
                    quantity=first.quantity,
                    price=first.price,
                    type=first.type,
                    time_in_force=first.time_in_force,
                    client_order_id=client_order_id,
                )
                await place_until_answered(by_user[user_id], request, record)

        await asyncio.gather(*(retry_all(user_id) for user_id in by_user))
    assert await public_reads(stack, traders, symbol) == before, "a retry changed something"

    phase("checking against the log")
    print(
        json.dumps(
            {
                "orders": len(record.answers),
                "refused_and_retried": record.refusals,
                "queued": sum(len(ids) for ids in record.queued.values()),
                "recovery_seconds": {k: [round(v, 1) for v in vs] for k, vs in recoveries.items()},
            }
        )
    )
    await check_against_the_log(stack, record)


async def check_against_the_log(stack: Stack, record: Record) -> None:
    assert stack.exchange is not None
    batches = await read_log(stack.exchange)
    firsts: dict[tuple[str, str], list[str]] = {}
    states: dict[str, list[tuple[int, int]]] = {}
    refused_duplicates = 0
    for batch in batches:
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in ("order_accepted", "order_rejected"):
                order = getattr(event, kind).order
                if order.client_order_id:
                    key = (order.user_id, order.client_order_id)
                    firsts.setdefault(key, []).append(order.order_id)
            if kind in (
                "order_accepted",
                "order_rejected",
                "order_filled",
                "order_cancelled",
                "order_expired",
            ):
                order = getattr(event, kind).order
                states.setdefault(order.order_id, []).append((order.status, order.filled_quantity))
            if kind == "command_refused":
                refused_duplicates += 1
    assert len(record.answers) > 200, "the flow should have placed a steady stream"
    doubled = {key: ids for key, ids in firsts.items() if len(ids) > 1}
    assert not doubled, f"clientOrderIds that became two orders: {doubled}"
    for key, answers in record.answers.items():
        assert key in firsts, f"acknowledged order {answers[0].order_id} is not in the log"
        (first_id,) = firsts[key]
        assert {order.order_id for order in answers} == {first_id}, (
            f"{key}: a retry got another order than the first"
        )
        for order in answers:
            assert (order.status, order.filled_quantity) in states[order.order_id]
    assert refused_duplicates > 0, "the retries after the restart reached the engine"
    # A command answered "queued" (DEADLINE_EXCEEDED) was carried out exactly once: as the
    # first order of its clientOrderId, or refused as a repeat of it.
    executed: dict[str, int] = {}
    for batch in batches:
        if batch.command.WhichOneof("command") == "place_order":
            order_id = batch.command.place_order.order_id
            executed[order_id] = executed.get(order_id, 0) + 1
    for key, order_ids in record.queued.items():
        for order_id in order_ids:
            assert executed.get(order_id) == 1, (
                f"{key}: queued order {order_id} ran {executed.get(order_id, 0)} times"
            )
