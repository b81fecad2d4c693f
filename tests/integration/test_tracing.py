"""One OpenTelemetry trace follows an order: gateway -> Redis stream -> engine -> Kafka -> store."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.exchange_client import Exchange, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    with running_stack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("traced"),
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    ) as stack:
        yield stack


def exported_spans(log_path: Path) -> list[dict]:
    """Spans the console exporter printed (pretty JSON objects) into a service's log."""
    text = log_path.read_text(errors="replace")
    spans = []
    for match in re.finditer(r"^\{\n.*?^\}$", text, flags=re.M | re.S):
        try:
            span = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if "context" in span:
            spans.append(span)
    return spans


async def test_one_trace_follows_an_order_through_every_service(
    traced_stack: ExchangeStack,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced_stack.ports.gateway}") as channel:
        exchange = Exchange(channel, ADMIN_KEY)
        symbol = await exchange.add_symbol()
        trader = await exchange.participant()
        order = await trader.place(symbol, "BUY", 1, 10.0)
    logs = traced_stack.data_dir / "logs"

    def trace_ids(log: str, name: str) -> set[str]:
        return {
            span["context"]["trace_id"]
            for span in exported_spans(logs / log)
            if span["name"].endswith(name)
        }

    async def place_order_trace():
        """The PlaceOrder trace id, once the engine and the store have exported spans in it."""
        for trace_id in trace_ids("gateway.log", "OrderService/PlaceOrder"):
            if trace_id in trace_ids("engine.log", "engine.apply") and trace_id in trace_ids(
                "store.log", "store.record"
            ):
                return trace_id
        return None

    assert await eventually(
        place_order_trace, what=f"one trace of order {order.order_id} in gateway, engine, store"
    )
