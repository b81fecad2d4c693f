"""Limits through the real Envoy and gateway. Public reads and failed sign-ins are counted
per address (the one Envoy saw, passed in x-forwarded-for), so one noisy client is refused with
429 and Retry-After while everybody else is served. Admission control: a burst far above what
the engine answers in time is refused at once with RESOURCE_EXHAUSTED (429 over REST), never
CANCELLED, DEADLINE_EXCEEDED or 499, and every order answered OK is in the log exactly once.

Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3: all of 127/8 is the
loopback interface) to show the limits are per address. A stack of its own, with small limits.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from exchange.v1 import orders_pb2
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.exchange_client import Exchange, place_request
from tests.integration.test_order_path import read_log

pytestmark = pytest.mark.integration

PUBLIC_BURST = 30
FAILED_AUTH_BURST = 5
MAX_PENDING = 2
"""Commands waiting for the engine at the gateway before new ones are refused: small, so a
burst of a few hundred calls is surely over it on any machine."""


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    env = {
        "MOCKEX_PUBLIC_RATE_LIMIT_PER_SECOND": "1",
        "MOCKEX_PUBLIC_RATE_LIMIT_BURST": str(PUBLIC_BURST),
        "MOCKEX_FAILED_AUTH_PER_SECOND": "0.5",
        "MOCKEX_FAILED_AUTH_BURST": str(FAILED_AUTH_BURST),
        "MOCKEX_MAX_PENDING_COMMANDS": str(MAX_PENDING),
    }
    with running_stack(kafka_bootstrap, tmp_path_factory.mktemp("stack"), env) as stack:
        yield stack


class Client:
    """One keep-alive HTTP connection to the edge from a chosen source address."""

    def __init__(self, stack: ExchangeStack, source: str) -> None:
        self.connection = http.client.HTTPConnection(
            "127.0.0.1", stack.ports.edge, timeout=10, source_address=(source, 0)
        )

    def get(self, path: str, key: str | None = None) -> tuple[int, dict, dict]:
        headers = {"X-API-Key": key} if key is not None else {}
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def close(self) -> None:
        self.connection.close()


def test_public_reads_are_limited_per_address(stack: ExchangeStack) -> None:
    noisy, other = Client(stack, "127.0.0.2"), Client(stack, "127.0.0.1")
    try:
        answers = [noisy.get("/market/symbols") for _ in range(PUBLIC_BURST + 10)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:PUBLIC_BURST] == [200] * PUBLIC_BURST
        assert 429 in statuses[PUBLIC_BURST:], statuses
        status, headers, body = next(answer for answer in answers if answer[0] == 429)
        assert int(headers["retry-after"]) >= 1
        assert body["code"] == 8
        assert body["message"].startswith("too many public requests from this address")
        assert other.get("/market/symbols")[0] == 200
        # Participants' calls are limited per key, not by the public bucket of their address.
        key = admin_created_key(stack)
        assert noisy.get("/account", key)[0] == 200
    finally:
        noisy.close()
        other.close()


def test_failed_sign_ins_are_limited_per_address(stack: ExchangeStack) -> None:
    guesser, other = Client(stack, "127.0.0.3"), Client(stack, "127.0.0.1")
    try:
        answers = [guesser.get("/account", f"mx_guess{n}") for n in range(FAILED_AUTH_BURST + 5)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:FAILED_AUTH_BURST] == [401] * FAILED_AUTH_BURST
        assert statuses[FAILED_AUTH_BURST:].count(429) >= 4, statuses
        status, headers, body = answers[-1]
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert "too many failed sign-ins (unknown API keys) from this address" in body["message"]
        assert other.get("/account", "mx_typo")[0] == 401
    finally:
        guesser.close()
        other.close()


def admin_created_key(stack: ExchangeStack, user_id: str = "limits-1") -> str:
    connection = http.client.HTTPConnection("127.0.0.1", stack.ports.edge, timeout=10)
    try:
        body = json.dumps({"userId": user_id, "cash": 1000.0})
        headers = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"}
        connection.request("POST", "/admin/users", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["apiKey"]
    finally:
        connection.close()


async def test_overload_is_refused_at_once_and_nothing_admitted_is_lost(
    stack: ExchangeStack,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol()
        traders = [await exchange.participant() for _ in range(4)]

        async def place(n: int) -> orders_pb2.PlaceOrderResponse | grpc.aio.AioRpcError:
            trader = traders[n % len(traders)]
            request = place_request(symbol, "BUY", 1, 10.0, client_order_id=f"burst-{n}")
            call = trader.orders.PlaceOrder(request, metadata=trader.metadata, timeout=30)
            try:
                return await call
            except grpc.aio.AioRpcError as error:
                return error

        answers = await asyncio.gather(*(place(n) for n in range(160)))
    refused = [answer for answer in answers if isinstance(answer, grpc.aio.AioRpcError)]
    placed = [answer.order for answer in answers if not isinstance(answer, grpc.aio.AioRpcError)]
    assert Counter(error.code() for error in refused).keys() <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED
    }, Counter(error.code() for error in refused)
    assert refused and placed, (len(refused), len(placed))
    busy = refused[0]
    assert busy.details().startswith("the exchange is busy (")
    assert dict(busy.trailing_metadata())["retry-after"] == "1"
    logged = Counter(
        event.order_accepted.order.order_id
        for batch in await read_log(stack)
        for event in batch.events
        if event.HasField("order_accepted") and event.symbol == symbol
    )
    assert logged == Counter(order.order_id for order in placed)


def test_overload_over_rest_is_429_not_499(stack: ExchangeStack) -> None:
    symbol = asyncio.run(_symbol(stack))
    key = admin_created_key(stack, "burst-rest")
    body = json.dumps(
        {"symbol": symbol, "side": "BUY", "type": "LIMIT", "quantity": 1, "price": 10.0}
    )

    def post(_: int) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", stack.ports.edge, timeout=30)
        try:
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            connection.request("POST", "/order/place", body=body, headers=headers)
            response = connection.getresponse()
            message = json.loads(response.read()).get("message", "")
            return response.status, response.getheader("retry-after") or "", message
        finally:
            connection.close()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(post, range(96)))
    statuses = Counter(status for status, _, _ in answers)
    assert statuses.keys() <= {200, 429}, statuses
    assert statuses[200] > 0 and statuses[429] > 0, statuses
    for status, retry_after, message in answers:
        if status == 429:
            assert retry_after == "1" and message.startswith("the exchange is busy ("), message


async def _symbol(stack: ExchangeStack) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.gateway}") as channel:
        return await Exchange(channel, ADMIN_KEY).add_symbol()


def test_one_log_line_per_request_with_code_user_and_order(stack: ExchangeStack) -> None:
    key = admin_created_key(stack, "logged-1")
    client = Client(stack, "127.0.0.1")
    try:
        assert client.get("/order/status/no-such-order", key)[0] == 404
        assert client.get("/market/symbols")[0] == 200
    finally:
        client.close()
    log = (stack.data_dir / "logs" / "gateway.log").read_text()
    lines = [line for line in log.splitlines() if " request rpc=" in line]
    assert any(
        "rpc=OrderService/GetOrder http=GET /order/status/no-such-order code=NOT_FOUND ms=" in line
        and " user=logged-1 order=no-such-order trace=" in line
        for line in lines
    ), lines[-5:]
    # Envoy's access log has the request's own method, not the transcoder's POST.
    edge_log = stack.data_dir / "logs" / "edge.log"
    deadline = time.monotonic() + 10
    while " path=/order/status/no-such-order " not in edge_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no access-log line"
        time.sleep(0.2)
    [line] = [
        line
        for line in edge_log.read_text(errors="replace").splitlines()
        if " path=/order/status/no-such-order " in line
    ]
    assert " method=GET path=/order/status/no-such-order " in line, line
    assert any(
        "rpc=AdminService/CreateUser http=POST /admin/users code=OK" in line for line in lines
    )
    # A successful read is at DEBUG: not in the log.
    assert not any(
        "rpc=BookService/ListSymbols http=GET /market/symbols code=OK" in line for line in lines
    )
    assert any("/market/symbols code=RESOURCE_EXHAUSTED" in line for line in lines)


def test_headers_envoy_forwards_are_accepted_and_larger_ones_are_431(stack: ExchangeStack) -> None:
    """Envoy takes 32 KiB of headers; the gateway accepts all it forwards (it once answered 9-31
    KiB with grpc's RESOURCE_EXHAUSTED, a 429 that told the client to wait)."""
    client = Client(stack, "127.0.0.1")
    try:
        client.connection.request("GET", "/market/symbols", headers={"X-Padding": "p" * 20_000})
        response = client.connection.getresponse()
        response.read()
        assert response.status == 200
    finally:
        client.close()
    client = Client(stack, "127.0.0.1")
    try:
        client.connection.request("GET", "/market/symbols", headers={"X-Padding": "p" * 40_000})
        response = client.connection.getresponse()
        response.read()
        assert response.status == 431
    finally:
        client.close()


async def test_an_oversized_grpc_message_is_refused_and_the_gateway_serves_on(
    stack: ExchangeStack,
) -> None:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{stack.ports.gateway}", options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol()
        trader = await exchange.participant()
        huge = place_request(symbol, "BUY", 1, 10.0, client_order_id="x" * (2 * 1024 * 1024))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await trader.orders.PlaceOrder(huge, metadata=trader.metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (refused.value.details() or "")
        placed = await trader.place(symbol, "BUY", 1, 10.0)
        assert placed.order_id
