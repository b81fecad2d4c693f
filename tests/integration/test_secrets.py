"""Secrets on a real stack: Redis wants its password, no log holds a key, the data is private.

The stack is this module's own (exchange_stack): every log file it writes is under its data
directory, Envoy's access log included (logs/edge.log).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError

from exchange.v1 import accounts_pb2, accounts_pb2_grpc
from mockex.settings import redis_url_for
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_order_path import read_log
from tests.integration.test_rest_edge import Edge

LOG_SECONDS = 20.0
"""How long a request may take to reach Envoy's access log (it flushes it in the background)."""


async def test_redis_refuses_a_client_without_the_password(exchange_stack: ExchangeStack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", exchange_stack.ports.redis)
    try:
        writer.write(b"PING\r\nGET exchange:v1:views\r\n")
        await writer.drain()
        refusals = [await asyncio.wait_for(reader.readline(), 5) for _ in range(2)]
    finally:
        writer.close()
        await writer.wait_closed()
    assert refusals == [b"-NOAUTH Authentication required.\r\n"] * 2
    wrong = Redis.from_url(redis_url_for(f"127.0.0.1:{exchange_stack.ports.redis}", "wrong"))
    try:
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()
    client = Redis.from_url(exchange_stack.redis_url)
    try:
        assert await client.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        await client.aclose()


async def use_every_way_of_giving_a_key(stack: ExchangeStack) -> list[str]:
    """A participant's key in X-API-Key (REST, valid, wrong and with a non-UTF-8 byte), in
    /ws/orderupdates?apiKey=..., in gRPC metadata, and a rotated key; returns every key used."""
    from websockets.asyncio.client import connect

    rest = Edge(f"http://127.0.0.1:{stack.ports.edge}")
    symbol = await asyncio.to_thread(rest.add_symbol)
    user_id = "s" + uuid.uuid4().hex[:10]
    created = await asyncio.to_thread(
        rest.ok, "POST", "/admin/users", {"userId": user_id, "cash": 100_000}, ADMIN_KEY
    )
    key = created["apiKey"]
    updates = f"ws://127.0.0.1:{stack.ports.edge}/ws/orderupdates?apiKey={key}"
    async with connect(updates) as websocket:
        order = await asyncio.to_thread(rest.place, key, symbol, "BUY", 1, 99.0)
        update = json.loads(await asyncio.wait_for(websocket.recv(), 10))
        assert update["orderId"] == order["orderId"]
    for wrong in (key + "x", key[:-1] + "\xff"):
        answer = await asyncio.to_thread(rest.call, "GET", "/account", key=wrong)
        assert answer.status in (400, 401), answer
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        account = await accounts.GetAccount(
            accounts_pb2.GetAccountRequest(), metadata=(("x-api-key", key),), timeout=10
        )
        assert account.user_id == user_id
    rotated = await asyncio.to_thread(
        rest.ok, "POST", "/admin/keys/rotate", {"userId": user_id}, ADMIN_KEY
    )
    return [key, key + "x", key[:-1], rotated["apiKey"]]


def wait_for_access_log(edge_log: Path, path: str) -> None:
    deadline = time.monotonic() + LOG_SECONDS
    while f" path={path} " not in edge_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no access-log line for {path} in {edge_log}"
        time.sleep(0.1)


async def test_no_log_holds_a_key_or_the_redis_password(exchange_stack: ExchangeStack) -> None:
    secrets = await use_every_way_of_giving_a_key(exchange_stack)
    logs = exchange_stack.data_dir / "logs"
    await asyncio.to_thread(wait_for_access_log, logs / "edge.log", "/ws/orderupdates")
    await asyncio.to_thread(wait_for_access_log, logs / "edge.log", "/admin/keys/rotate")
    secrets += [ADMIN_KEY, exchange_stack.redis_password]
    log_files = [*logs.glob("*.log"), exchange_stack.data_dir / "redis" / "redis.log"]
    assert {path.name for path in log_files} >= {"edge.log", "gateway.log", "stream.log"}
    for path in log_files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, f"{path} holds a secret"
    # The engine's log (Kafka) keeps a key's hash, never the key.
    records = b"".join(batch.SerializeToString() for batch in await read_log(exchange_stack))
    assert not [secret for secret in secrets if secret.encode() in records]


def test_the_data_directory_is_the_users_alone(exchange_stack: ExchangeStack) -> None:
    """Logs, pid files, the database, Redis's config (its password) and the edge's config: no
    permission bit for group or others, whatever the umask of the test run."""
    opened: list[str] = []
    seen: set[str] = set()
    for directory, _subdirectories, files in os.walk(exchange_stack.data_dir):
        for name in [directory, *(os.path.join(directory, file) for file in files)]:
            seen.add(os.path.relpath(name, exchange_stack.data_dir))
            if os.stat(name).st_mode & 0o077:
                opened.append(f"{name} {os.stat(name).st_mode & 0o777:o}")
    assert opened == []
    expected = {"logs/gateway.log", "logs/edge.log", "run/engine.pid", "redis/redis.conf"}
    assert expected <= seen and any(name.startswith("mockex.db") for name in seen)
