"""Schemathesis against the live edge: generated requests for every documented operation, and
no answer may be a server error (5xx)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from mockex.processes import REPO_ROOT
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.exchange_client import Exchange

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPENAPI = REPO_ROOT / "build" / "openapi.json"


def run_schemathesis(stack: ExchangeStack, api_key: str, tmp_path) -> subprocess.CompletedProcess:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    return subprocess.run(
        [
            str(schemathesis),
            "run",
            str(OPENAPI),
            "--url",
            f"http://127.0.0.1:{stack.ports.edge}",
            "--header",
            f"X-API-Key: {api_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--seed",
            "20261126",
            "--request-timeout",
            "15",
            "--max-time",
            "40",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("who", ["admin", "participant"])
async def test_generated_requests_get_no_server_error(
    exchange_stack: ExchangeStack, who: str, tmp_path
) -> None:
    assert OPENAPI.exists(), "make proto writes build/openapi.json"
    api_key = ADMIN_KEY
    if who == "participant":
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{exchange_stack.ports.gateway}"
        ) as channel:
            exchange = Exchange(channel, ADMIN_KEY)
            symbol = await exchange.add_symbol()
            api_key = (await exchange.participant(positions={symbol: 1000})).api_key
    result = run_schemathesis(exchange_stack, api_key, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
