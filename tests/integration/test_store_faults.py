"""store_svc heals by itself: Kafka SIGSTOPped for 10 s, then killed with SIGKILL and restarted,
with the store left running throughout. Readiness (health service "") is NOT_SERVING while the
log is away and SERVING again after, liveness stays SERVING, answers in between are UNAVAILABLE
(never stale), and the consumer carries on where it was.

A broker of its own (killing the session's broker would break the other tests) and SQLite: the
faults are Kafka's, the database is beside the point.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc

from exchange.internal.v1 import store_pb2
from mockex import processes
from tests.integration.test_store_app import (
    LOG,
    NOT_SERVING,
    SECOND,
    SERVING,
    T1,
    health_of,
    placed,
    produce,
    running_store,
    store_config,
    stored,
    until_ready_is,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOPPED_SECONDS = 10.0
FRESHNESS_TIMEOUT = 1.0


@asynccontextmanager
async def own_broker(data_dir: Path) -> AsyncIterator[list[processes.ManagedProcess]]:
    """A Kafka broker for this test only; yields [process], which the test replaces on restart."""
    port = processes.free_port()
    broker = [processes.start_kafka(port, processes.free_port(), data_dir)]
    try:
        yield broker
    finally:
        if broker[0].alive():
            os.killpg(broker[0].pid, signal.SIGCONT)  # a stopped broker cannot handle SIGTERM
        broker[0].stop()


async def restart(broker: processes.ManagedProcess, port: int) -> processes.ManagedProcess:
    """Start the same broker (same ports, same data) again, without blocking the event loop: the
    store runs in it and must notice the broker's return by itself."""
    again = processes.ManagedProcess(broker.name, broker.argv, broker.log_path).start()
    deadline = time.monotonic() + 60
    while not processes.port_open(port):
        assert again.alive(), f"the broker did not restart:\n{again.tail()}"
        assert time.monotonic() < deadline, "the broker did not open its port in 60s"
        await asyncio.sleep(0.1)
    return again


async def assert_unavailable_within_the_bound(stub, order_id: str) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as away:
        await stored(stub, order_id)
    assert away.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < FRESHNESS_TIMEOUT + 1.0


async def test_store_heals_by_itself_when_kafka_stops_or_is_killed(tmp_path: Path):
    async with own_broker(tmp_path / "kafka") as broker:
        port = int(broker[0].argv[2])
        bootstrap = f"127.0.0.1:{port}"
        suffix = uuid.uuid4().hex[:8]
        topics = {"events": f"events.{suffix}", "snapshots": f"snapshots.{suffix}"}
        await processes.create_topics(bootstrap, list(topics.values()))
        config = store_config(
            f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            bootstrap,
            topics,
            freshness_timeout=FRESHNESS_TIMEOUT,
        )
        async with (
            running_store(config) as (app, stub),
            grpc.aio.insecure_channel(app.grpc_address) as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            await produce(bootstrap, topics["events"], [LOG[0], placed("o1", "erin", T1)])
            assert await stored(stub, "o1") is not None
            assert await health_of(health, "") == SERVING

            # SIGSTOP: the broker holds every connection open and answers nothing.
            os.killpg(broker[0].pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            await until_ready_is(health, NOT_SERVING, within=STOPPED_SECONDS - 2)
            assert await health_of(health, "liveness") == SERVING
            await assert_unavailable_within_the_bound(stub, "o1")
            await asyncio.sleep(STOPPED_SECONDS - (time.monotonic() - stopped_at))
            os.killpg(broker[0].pid, signal.SIGCONT)

            await until_ready_is(health, SERVING, within=15)
            await produce(bootstrap, topics["events"], [placed("o2", "erin", T1 + SECOND)])
            assert await stored(stub, "o2") is not None

            # SIGKILL, then the same broker again on the same port and data.
            broker[0].kill()
            await until_ready_is(health, NOT_SERVING, within=5)
            await assert_unavailable_within_the_bound(stub, "o2")
            broker[0] = await restart(broker[0], port)

            await until_ready_is(health, SERVING, within=30)
            await produce(bootstrap, topics["events"], [placed("o3", "erin", T1 + 2 * SECOND)])
            assert await stored(stub, "o3") is not None
            erin = await stub.ListUserOrders(store_pb2.ListUserOrdersRequest(user_id="erin"))
            assert [order.order_id for order in erin.orders] == ["o3", "o2", "o1"]
            assert app.consumer is not None and app.consumer.task is not None
            assert not app.consumer.task.done()
            assert await health_of(health, "liveness") == SERVING
