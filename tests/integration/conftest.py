"""Real Redis and a real Kafka broker for the integration tests, on free loopback ports.

Session-scoped: started once, stopped by pid at the end. Each test gets a clean Redis database
(FLUSHDB) and, through `topics`, Kafka topics with names of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mockex import processes
from mockex.private import new_password
from mockex.settings import redis_url_for
from mockex.stack import ExchangeStack, StackPorts

ADMIN_KEY = "test-admin-key"
RATE_LIMIT_PER_SECOND = 20
RATE_LIMIT_BURST = 40
MAX_OPEN_ORDERS = 25


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the session's, with a password like every Redis of the exchange's: the URL
    carries it."""
    port, password = processes.free_port(), new_password()
    server = processes.start_redis(port, tmp_path_factory.mktemp("redis"), password)
    yield redis_url_for(f"127.0.0.1:{port}", password)
    server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, controller_port = processes.free_port(), processes.free_port()
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    broker = processes.start_kafka(port, controller_port, data_dir)
    yield f"127.0.0.1:{port}"
    broker.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def topics(kafka_bootstrap: str) -> dict[str, str]:
    """Fresh topic names for this test: {'events': ..., 'snapshots': ...}, created on the broker."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "events": f"exchange.v1.events.{suffix}",
        "snapshots": f"exchange.v1.snapshots.{suffix}",
    }
    await processes.create_topics(kafka_bootstrap, list(names.values()))
    return names


@contextmanager
def running_stack(
    kafka_bootstrap: str, data_dir: Path, extra_env: dict[str, str]
) -> Iterator[ExchangeStack]:
    """The services and Envoy as real processes, with a Redis of their own and topics of their
    own on the shared broker; stopped by pid at the end."""
    ports = StackPorts.free()
    ports.kafka = int(kafka_bootstrap.rsplit(":", 1)[1])
    stack = ExchangeStack(
        data_dir=data_dir,
        admin_key=ADMIN_KEY,
        ports=ports,
        topic_suffix=f".{uuid.uuid4().hex[:8]}",
        extra_env=extra_env,
    )
    try:
        stack.start_infrastructure(kafka=False)
        stack.start_services()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def exchange_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    """One running exchange per test module, with small limits that the tests exercise."""
    with running_stack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("stack"),
        {
            "MOCKEX_ENGINE_TIMEOUT_SECONDS": "10",
            "MOCKEX_RATE_LIMIT_PER_SECOND": str(RATE_LIMIT_PER_SECOND),
            "MOCKEX_RATE_LIMIT_BURST": str(RATE_LIMIT_BURST),
            "MOCKEX_MAX_OPEN_ORDERS": str(MAX_OPEN_ORDERS),
        },
    ) as stack:
        yield stack
