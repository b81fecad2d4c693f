"""Crash tests: `kill -9` the engine (and, separately, the store) under a steady order flow.

Every acknowledged order must be in the log exactly once with the state it was acknowledged
with, the recovered engine must equal a replay of its log, and the store must end up holding
exactly what the log says.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from collections.abc import Iterator

import grpc
import pytest
from redis.asyncio import Redis

from engine_svc.engine import MatchingEngine
from engine_svc.servicer import CommandHandler
from engine_svc.views import account_view, book_view
from exchange.internal.v1 import engine_pb2, store_pb2, store_pb2_grpc
from exchange.v1 import types_pb2
from mockex import names
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.exchange_client import Exchange, Participant, eventually
from tests.integration.test_order_path import read_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 10
ORDER_EVENTS = (
    "order_accepted",
    "order_rejected",
    "order_filled",
    "order_cancelled",
    "order_expired",
)


@pytest.fixture(scope="module")
def crash_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    """Frequent snapshots so that recovery goes through snapshot + log replay, not log alone."""
    with running_stack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("crash"),
        {
            "MOCKEX_SNAPSHOT_EVERY": "150",
            "MOCKEX_ENGINE_TIMEOUT_SECONDS": "4",
            "MOCKEX_RATE_LIMIT_PER_SECOND": "0",
        },
    ) as stack:
        yield stack


class FlowRecorder:
    """What the participants were told: acknowledged orders and the ids of unanswered ones."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, types_pb2.Order] = {}
        self.unanswered: list[str] = []
        self.cancel_answers: dict[str, types_pb2.Order] = {}


async def trade_steadily(
    trader: Participant, symbol: str, recorder: FlowRecorder, stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    open_ids: list[str] = []
    while not stop.is_set():
        try:
            if open_ids and rng.random() < 0.25:
                order_id = open_ids.pop(rng.randrange(len(open_ids)))
                recorder.cancel_answers[order_id] = await trader.cancel(order_id)
                continue
            side = rng.choice(("BUY", "SELL"))
            kind = rng.random()
            if kind < 0.1:
                order = await trader.place(symbol, side, rng.randint(1, 5), type="MARKET")
            else:
                tif = "IOC" if kind < 0.25 else "GFD"
                price = round(rng.randint(95, 105) * 0.5, 2)
                order = await trader.place(symbol, side, rng.randint(1, 10), price, tif=tif)
            recorder.acknowledged[order.order_id] = order
            if order.status in (types_pb2.NEW, types_pb2.PARTIALLY_FILLED):
                open_ids.append(order.order_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                recorder.unanswered.append(exc.details() or "")
            elif exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            await asyncio.sleep(0.05)


async def run_flow_with_kills(
    stack: ExchangeStack, victim: str, kills: int, seed: int
) -> tuple[FlowRecorder, list[str]]:
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol()
        traders = [
            await exchange.participant(cash=1_000_000, positions={symbol: 10_000}) for _ in range(4)
        ]
        recorder = FlowRecorder()
        stop = asyncio.Event()
        flows = [
            asyncio.create_task(trade_steadily(trader, symbol, recorder, stop, seed + index))
            for index, trader in enumerate(traders)
        ]
        loop = asyncio.get_running_loop()
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            stack.processes[victim].kill()
            await loop.run_in_executor(None, stack.start_service, victim)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*flows)
    return recorder, [trader.user_id for trader in traders]


async def wait_engine_drained(stack: ExchangeStack) -> None:
    redis = Redis.from_url(stack.redis_url)
    try:

        async def drained():
            groups = await redis.xinfo_groups(names.COMMANDS_STREAM)
            group = next(g for g in groups if g["name"] == names.ENGINE_GROUP.encode())
            return group["pending"] == 0 and group.get("lag", 0) == 0

        await eventually(drained, what="the engine to take every queued command")
    finally:
        await redis.aclose()


def last_states(batches: list[engine_pb2.EngineBatch]) -> dict[str, engine_pb2.OrderState]:
    states = {}
    for batch in batches:
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in ORDER_EVENTS:
                state = getattr(event, kind).order
                states[state.order_id] = state
    return states


async def test_engine_killed_under_load_loses_no_acknowledged_order(
    crash_stack: ExchangeStack,
) -> None:
    recorder, _ = await run_flow_with_kills(crash_stack, "engine", KILLS, seed=7)
    await wait_engine_drained(crash_stack)
    batches = await read_log(crash_stack)
    assert len(recorder.acknowledged) > 100, "the flow should have placed a steady stream"

    # Exactly once: one accept-or-reject per order id in the whole log.
    entries: dict[str, int] = {}
    for batch in batches:
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in ("order_accepted", "order_rejected"):
                order_id = getattr(event, kind).order.order_id
                entries[order_id] = entries.get(order_id, 0) + 1
    duplicated = {order_id: count for order_id, count in entries.items() if count > 1}
    assert not duplicated
    missing = [order_id for order_id in recorder.acknowledged if order_id not in entries]
    assert not missing

    # The acknowledged answer is a state the log holds for that order: the one right after its
    # own command, or (an answer to a resend after a restart) a later one.
    logged_states: dict[str, list[tuple[int, int]]] = {}
    for batch in batches:
        for event in batch.events:
            kind = event.WhichOneof("event")
            if kind in ORDER_EVENTS:
                state = getattr(event, kind).order
                logged_states.setdefault(state.order_id, []).append(
                    (state.status, state.filled_quantity)
                )
    for order_id, answered in recorder.acknowledged.items():
        assert (answered.status, answered.filled_quantity) in logged_states[order_id], order_id

    # The recovered engine equals a replay of its own log (books and balances).
    replayed = CommandHandler(MatchingEngine())
    for batch in batches:
        events = replayed.apply(batch.command)
        assert len(events) == len(batch.events), "replay must reproduce the logged events"
    redis = Redis.from_url(crash_stack.redis_url)
    try:
        for symbol, state in replayed.engine.symbols.items():
            cached = types_pb2.OrderBook.FromString(await redis.get(names.book_key(symbol)))
            expected = book_view(state, 0)
            assert list(cached.bids) == list(expected.bids)
            assert list(cached.asks) == list(expected.asks)
            assert cached.sequence == expected.sequence
        for user_id in replayed.engine.accounts:
            cached = engine_pb2.CachedAccount.FromString(
                await redis.hget(names.ACCOUNTS_KEY, user_id)
            )
            assert cached.account == account_view(replayed.engine, user_id)
    finally:
        await redis.aclose()

    # Final states through the gateway equal the log's last word on each order.
    final = last_states(batches)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{crash_stack.ports.gateway}") as channel:
        admin = Participant(channel, "admin", ADMIN_KEY)
        for order_id in list(recorder.acknowledged)[:: max(1, len(recorder.acknowledged) // 60)]:
            answer = await admin.get(order_id)
            assert (answer.status, answer.filled_quantity) == (
                final[order_id].status,
                final[order_id].filled_quantity,
            )
        # Every open order's cached object lists all its fills, also those from before a
        # restart (they travel in the snapshot).
        for order_id in replayed.engine.open_orders:
            answer = await admin.get(order_id)
            assert sum(fill.quantity for fill in answer.fills) == answer.filled_quantity, answer


async def test_store_killed_under_load_ends_equal_to_the_log(crash_stack: ExchangeStack) -> None:
    recorder, users = await run_flow_with_kills(crash_stack, "store", KILLS // 2, seed=11)
    await wait_engine_drained(crash_stack)
    batches = await read_log(crash_stack)
    final = last_states(batches)
    logged_trades = {
        event.trade_executed.trade_id
        for batch in batches
        for event in batch.events
        if event.WhichOneof("event") == "trade_executed"
    }
    async with grpc.aio.insecure_channel(f"127.0.0.1:{crash_stack.ports.store}") as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)

        async def caught_up():
            orders = []
            for user_id in users:
                answer = await store.ListUserOrders(
                    store_pb2.ListUserOrdersRequest(user_id=user_id, limit=100_000), timeout=10
                )
                orders.extend(answer.orders)
            stored = {order.order_id: order for order in orders}
            mine = {order_id for order_id, state in final.items() if state.user_id in users}
            if set(stored) != mine:
                return None
            if any(
                (stored[i].status, stored[i].filled_quantity)
                != (final[i].status, final[i].filled_quantity)
                for i in mine
            ):
                return None
            return stored

        stored = await eventually(caught_up, timeout=30, what="the store to match the log")
    assert len(stored) >= len(recorder.acknowledged)
    for order_id, order in stored.items():
        state = final[order_id]
        assert order.filled_quantity == state.filled_quantity
        assert len(order.fills) == len({fill.trade_id for fill in order.fills})
        assert {fill.trade_id for fill in order.fills} <= logged_trades


async def test_engine_timeout_answers_with_the_order_id_and_the_order_is_processed_once_later(
    crash_stack: ExchangeStack,
) -> None:
    engine = crash_stack.processes["engine"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{crash_stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol()
        trader = await exchange.participant()
        os.kill(engine.pid, signal.SIGSTOP)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as timed_out:
                await trader.place(symbol, "BUY", 3, 10.0)
        finally:
            os.kill(engine.pid, signal.SIGCONT)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        order_id = re.search(r"orderId (\w+)", timed_out.value.details()).group(1)

        order = await eventually(lambda: trader.get(order_id), what=f"order {order_id}")
        assert order.status == types_pb2.NEW
        assert order.quantity == 3
    await wait_engine_drained(crash_stack)
    accepted = [
        event
        for batch in await read_log(crash_stack)
        for event in batch.events
        if event.WhichOneof("event") == "order_accepted"
        and event.order_accepted.order.order_id == order_id
    ]
    assert len(accepted) == 1
