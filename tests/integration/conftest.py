"""Real Redis and a real Kafka broker for the integration tests, on free loopback ports.

Session-scoped: started once, stopped by pid at the end. Each test gets a clean Redis database
(FLUSHALL) and, through `topics`, Kafka topics with names of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mockex import processes


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
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
    await client.flushall()
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
