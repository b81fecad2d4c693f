"""Limits by client address through the real Envoy and gateway: public reads and failed
sign-ins are counted per address (the one Envoy saw, passed in x-forwarded-for), so one noisy
client is refused with 429 and Retry-After while everybody else is served.

Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3: all of 127/8 is the
loopback interface) to show the limits are per address. A stack of its own, with small limits.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, running_stack

pytestmark = pytest.mark.integration

PUBLIC_BURST = 30
FAILED_AUTH_BURST = 5


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    env = {
        "MOCKEX_PUBLIC_RATE_LIMIT_PER_SECOND": "1",
        "MOCKEX_PUBLIC_RATE_LIMIT_BURST": str(PUBLIC_BURST),
        "MOCKEX_FAILED_AUTH_PER_SECOND": "0.5",
        "MOCKEX_FAILED_AUTH_BURST": str(FAILED_AUTH_BURST),
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


def admin_created_key(stack: ExchangeStack) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", stack.ports.edge, timeout=10)
    try:
        body = json.dumps({"userId": "limits-1", "cash": 1000.0})
        headers = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"}
        connection.request("POST", "/admin/users", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["apiKey"]
    finally:
        connection.close()
