"""The participant edge: REST/JSON and gRPC-Web through Envoy on the real stack (SPEC.md 3 and 5).

Plain HTTP with urllib against Envoy's port, as a participant's script would do it. The error
mapping of every gRPC code is checked against a stub gRPC server behind a second Envoy, because
the real gateway cannot be made to answer UNAVAILABLE or DEADLINE_EXCEEDED on demand.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from exchange.v1 import accounts_pb2, accounts_pb2_grpc, market_pb2, streams_pb2
from mockex import edge, processes
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_order_path import read_log

pytestmark = pytest.mark.integration

ORDER_FIELDS = {
    "orderId",
    "userId",
    "symbol",
    "side",
    "type",
    "timeInForce",
    "price",
    "quantity",
    "filledQuantity",
    "remainingQuantity",
    "avgFillPrice",
    "status",
    "rejectReason",
    "fills",
    "createdAt",
    "updatedAt",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    """Parsed JSON, or the raw bytes when the answer is not JSON."""


class Edge:
    """A REST client of the edge: urllib, JSON in and out, errors as answers."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=dict(headers or {})
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("X-API-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return _answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return _answer(error.code, error.headers, error.read())

    def ok(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        answer = self.call(method, path, body, key)
        assert answer.status == 200, f"{method} {path}: {answer.status} {answer.body}"
        return answer.body

    def add_symbol(self, tick_size: float = 0.01, reference_price: float = 100.0) -> str:
        symbol = "R" + uuid.uuid4().hex[:6].upper()
        listing = {"symbol": symbol, "tickSize": tick_size, "referencePrice": reference_price}
        self.ok("POST", "/admin/symbols", listing, ADMIN_KEY)
        return symbol

    def participant(self, cash: float = 1_000_000.0, positions: dict | None = None) -> str:
        """A new user; returns its API key."""
        user = {"userId": "r" + uuid.uuid4().hex[:10], "cash": cash, "positions": positions or {}}
        return self.ok("POST", "/admin/users", user, ADMIN_KEY)["apiKey"]

    def place(self, key: str, symbol: str, side: str, quantity: int, price: float, **extra) -> dict:
        order = {
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "price": price,
            "type": "LIMIT",
            **extra,
        }
        return self.ok("POST", "/order/place", order, key)


def _answer(status: int, headers, payload: bytes) -> Answer:
    content_type = headers.get("content-type", "")
    body = json.loads(payload) if content_type.startswith("application/json") else payload
    return Answer(status, {name.lower(): value for name, value in headers.items()}, body)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def eventually(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """The store and the caches lag the engine by design."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)  # well under the gateway's per-key rate limit
    raise AssertionError(f"timed out waiting for {what}")


def assert_error(answer: Answer, http_status: int, grpc_code: int, naming: str = "") -> None:
    """SPEC.md 3: the HTTP status of the gRPC code, body exactly {code, message, details}."""
    assert answer.status == http_status, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert set(answer.body) == {"code", "message", "details"}, answer.body
    assert answer.body["code"] == grpc_code, answer.body
    assert answer.body["details"] == []
    assert isinstance(answer.body["message"], str) and answer.body["message"]
    assert naming in answer.body["message"], answer.body


@pytest.fixture(scope="module")
def rest(exchange_stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")


# ---- Every REST path of SPEC.md section 3 ----


def test_place_order_answers_the_processed_order_with_every_field(rest: Edge) -> None:
    symbol = rest.add_symbol()
    seller = rest.participant(positions={symbol: 100})
    buyer = rest.participant()

    resting = rest.place(seller, symbol, "SELL", 10, 101.25)
    assert set(resting) >= ORDER_FIELDS
    assert resting["status"] == "NEW"
    assert (resting["side"], resting["type"], resting["timeInForce"]) == ("SELL", "LIMIT", "GFD")
    assert (resting["quantity"], resting["filledQuantity"], resting["remainingQuantity"]) == (
        10,
        0,
        10,
    )
    assert resting["avgFillPrice"] == 0 and resting["rejectReason"] == "" and resting["fills"] == []
    for field in ("price", "quantity", "filledQuantity", "remainingQuantity", "avgFillPrice"):
        assert is_number(resting[field]), f"{field} must be a JSON number: {resting[field]!r}"
    assert RFC3339.match(resting["createdAt"]) and RFC3339.match(resting["updatedAt"])

    taker = rest.place(buyer, symbol, "BUY", 4, 102.00, timeInForce="IOC")
    assert taker["status"] == "FILLED"
    assert taker["avgFillPrice"] == 101.25
    [fill] = taker["fills"]
    assert set(fill) == {"tradeId", "price", "quantity", "timestamp", "fee"}
    assert (fill["price"], fill["quantity"]) == (101.25, 4)
    assert is_number(fill["quantity"]) and RFC3339.match(fill["timestamp"])


def test_rejected_order_has_an_id_and_a_reason(rest: Edge) -> None:
    symbol = rest.add_symbol()
    poor = rest.participant(cash=10)
    order = rest.place(poor, symbol, "BUY", 100, 5.0)
    assert order["orderId"]
    assert (order["status"], order["rejectReason"]) == ("REJECTED", "INSUFFICIENT_CASH")


def test_order_status_and_another_users_order_is_not_found(rest: Edge) -> None:
    symbol = rest.add_symbol()
    owner, other = rest.participant(), rest.participant()
    order = rest.place(owner, symbol, "BUY", 3, 9.5)

    seen = rest.ok("GET", f"/order/status/{order['orderId']}", key=owner)
    assert set(seen) >= ORDER_FIELDS
    assert (seen["orderId"], seen["status"], seen["remainingQuantity"]) == (
        order["orderId"],
        "NEW",
        3,
    )
    hidden = rest.call("GET", f"/order/status/{order['orderId']}", key=other)
    assert_error(hidden, 404, 5, naming=order["orderId"])
    assert_error(rest.call("GET", "/order/status/nosuchorder", key=owner), 404, 5)


def test_cancel_answers_cancelled_and_a_second_cancel_is_failed_precondition(rest: Edge) -> None:
    symbol = rest.add_symbol()
    owner = rest.participant()
    order = rest.place(owner, symbol, "BUY", 5, 50.0)

    cancelled = rest.ok("DELETE", f"/order/{order['orderId']}", key=owner)
    assert set(cancelled) >= ORDER_FIELDS
    assert (cancelled["orderId"], cancelled["status"]) == (order["orderId"], "CANCELLED")
    assert rest.ok("GET", "/account", key=owner)["reservedCash"] == 0

    again = rest.call("DELETE", f"/order/{order['orderId']}", key=owner)
    assert_error(again, 400, 9, naming="CANCELLED")


def test_orders_lists_the_callers_orders_newest_first_by_status(rest: Edge) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()
    first = rest.place(trader, symbol, "BUY", 1, 10.0)
    second = rest.place(trader, symbol, "BUY", 1, 10.5)
    rest.ok("DELETE", f"/order/{first['orderId']}", key=trader)

    def listed(status: str) -> list[str] | None:
        orders = rest.ok("GET", f"/orders?status={status}", key=trader)["orders"]
        return [order["orderId"] for order in orders] or None

    assert eventually(lambda: listed("open"), "the open order") == [second["orderId"]]
    assert eventually(lambda: listed("closed"), "the cancelled order") == [first["orderId"]]
    every = rest.ok("GET", "/orders", key=trader)["orders"]
    assert [order["orderId"] for order in every] == [second["orderId"], first["orderId"]]
    assert set(every[0]) >= ORDER_FIELDS
    assert_error(rest.call("GET", "/orders?status=bogus", key=trader), 400, 3, naming="status")


def test_market_symbols_lists_tick_lot_and_status(rest: Edge) -> None:
    symbol = rest.add_symbol(tick_size=0.05)
    symbols = {info["symbol"]: info for info in rest.ok("GET", "/market/symbols")["symbols"]}
    assert symbols[symbol] == {
        "symbol": symbol,
        "tickSize": 0.05,
        "lotSize": 1,
        "status": "OPEN",
        "referencePrice": 100,
        "basket": {},
        "conversionFee": 0,
    }


def test_quote_has_every_field_even_when_zero(rest: Edge) -> None:
    symbol = rest.add_symbol()
    quote = rest.ok("GET", f"/market/quote/{symbol}")
    assert set(quote) == {
        "symbol",
        "ltp",
        "lastQuantity",
        "bid",
        "bidSize",
        "ask",
        "askSize",
        "volume",
        "open",
        "high",
        "low",
        "timestamp",
        "sequence",
        "mark",
    }
    assert all(
        is_number(value) for name, value in quote.items() if name not in ("symbol", "timestamp")
    )
    assert quote["ltp"] == 0 and quote["bidSize"] == 0
    assert_error(rest.call("GET", "/market/quote/NOPE9"), 404, 5, naming="NOPE9")


def test_orderbook_best_first_aggregated_and_depth_limited(rest: Edge) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()
    for price in (10.0, 10.5, 10.5, 9.5):
        rest.place(trader, symbol, "BUY", 2, price)

    book = rest.ok("GET", f"/market/orderbook/{symbol}")
    assert set(book) == {"symbol", "bids", "asks", "sequence", "timestamp"}
    assert book["bids"] == [
        {"price": 10.5, "quantity": 4, "orders": 2},
        {"price": 10.0, "quantity": 2, "orders": 1},
        {"price": 9.5, "quantity": 2, "orders": 1},
    ]
    assert book["asks"] == []
    top = rest.ok("GET", f"/market/orderbook/{symbol}?depth=2")
    assert [level["price"] for level in top["bids"]] == [10.5, 10.0]


def test_trades_newest_first_and_candles(rest: Edge) -> None:
    symbol = rest.add_symbol()
    seller = rest.participant(positions={symbol: 50})
    buyer = rest.participant()
    rest.place(seller, symbol, "SELL", 5, 20.0)
    rest.place(seller, symbol, "SELL", 5, 20.5)
    rest.place(buyer, symbol, "BUY", 8, 21.0)

    def trades() -> list | None:
        listed = rest.ok("GET", f"/market/trades/{symbol}?limit=5")
        return listed["trades"] if len(listed["trades"]) == 2 else None

    newest, oldest = eventually(trades, "two trades in the store")
    assert set(newest) >= {"tradeId", "price", "quantity", "aggressorSide", "timestamp", "sequence"}
    assert [(newest["price"], newest["quantity"]), (oldest["price"], oldest["quantity"])] == [
        (20.5, 3),
        (20.0, 5),
    ]
    assert newest["aggressorSide"] == "BUY" and newest["sequence"] > oldest["sequence"]
    assert len(rest.ok("GET", f"/market/trades/{symbol}?limit=1")["trades"]) == 1

    candles = rest.ok("GET", f"/market/candles/{symbol}?interval=1m&limit=5")
    assert (candles["symbol"], candles["interval"]) == (symbol, "1m")
    [candle] = candles["candles"]
    assert set(candle) == {"start", "open", "high", "low", "close", "volume"}
    assert (candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"]) == (
        20.0,
        20.5,
        20.0,
        20.5,
        8,
    )
    bad = rest.call("GET", f"/market/candles/{symbol}?interval=5m")
    assert_error(bad, 400, 3, naming="interval")


def test_account_and_leaderboard(rest: Edge) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant(cash=5_000, positions={symbol: 10})
    rest.place(trader, symbol, "BUY", 10, 10.0)

    account = rest.ok("GET", "/account", key=trader)
    assert set(account) == {
        "userId",
        "cash",
        "reservedCash",
        "availableCash",
        "positions",
        "realizedPnl",
        "equity",
        "pnl",
        "startingValue",
        "feesPaid",
    }
    assert (account["cash"], account["reservedCash"], account["availableCash"]) == (
        5_000,
        100,
        4_900,
    )
    [position] = account["positions"]
    assert set(position) == {"symbol", "quantity", "avgPrice", "unrealizedPnl"}
    assert (position["symbol"], position["quantity"], position["avgPrice"]) == (symbol, 10, 100)
    # Granted at the reference price (100) and no trade since: worth what it was given at.
    assert (account["startingValue"], account["equity"], account["pnl"]) == (6_000, 6_000, 0)

    board = rest.ok("GET", "/leaderboard")
    assert set(board) == {"entries", "timestamp", "rankedBy"}
    assert board["rankedBy"] == "PNL"
    ranks = [entry["rank"] for entry in board["entries"]]
    assert ranks == list(range(1, len(ranks) + 1))
    mine = next(entry for entry in board["entries"] if entry["userId"] == account["userId"])
    assert set(mine) == {
        "rank",
        "userId",
        "pnl",
        "equity",
        "realizedPnl",
        "unrealizedPnl",
        "maxDrawdown",
        "sharpe",
        "roundPnl",
        "feesPaid",
    }
    assert mine["pnl"] == 0
    assert "admin" not in {entry["userId"] for entry in board["entries"]}


def test_healthz(rest: Edge) -> None:
    assert rest.ok("GET", "/healthz") == {"status": "SERVING"}


def test_admin_users_and_symbols(rest: Edge) -> None:
    symbol = "A" + uuid.uuid4().hex[:5].upper()
    listed = rest.ok(
        "POST", "/admin/symbols", {"symbol": symbol, "tickSize": 0.05, "lotSize": 10}, ADMIN_KEY
    )
    assert listed == {
        "symbol": symbol,
        "tickSize": 0.05,
        "lotSize": 10,
        "referencePrice": 0,
        "basket": {},
        "conversionFee": 0,
    }
    user_id = "adm" + uuid.uuid4().hex[:8]
    no_basis = rest.call(
        "POST", "/admin/users", {"userId": user_id, "positions": {symbol: 30}}, ADMIN_KEY
    )
    assert_error(no_basis, 400, 3, naming="costBasis")
    created = rest.ok(
        "POST",
        "/admin/users",
        {"userId": user_id, "cash": 250.5, "positions": {symbol: 30}, "costBasis": {symbol: 12.35}},
        ADMIN_KEY,
    )
    assert set(created) == {"userId", "apiKey"} and created["userId"] == user_id
    account = rest.ok("GET", "/account", key=created["apiKey"])
    assert account["cash"] == 250.5 and account["positions"][0]["quantity"] == 30
    assert account["positions"][0]["avgPrice"] == 12.35
    assert (account["startingValue"], account["pnl"]) == (621.0, 0)

    # An admin cash adjustment moves the starting value with the cash: no P&L.
    adjusted = rest.ok("POST", "/admin/cash", {"userId": user_id, "amount": 100}, ADMIN_KEY)
    assert adjusted == {"userId": user_id, "cash": 350.5, "startingValue": 721.0}
    account = rest.ok("GET", "/account", key=created["apiKey"])
    assert (account["cash"], account["pnl"]) == (350.5, 0)
    assert_error(
        rest.call("POST", "/admin/cash", {"userId": "nobody" + user_id, "amount": 1}, ADMIN_KEY),
        404,
        5,
        naming="userId",
    )
    assert_error(
        rest.call("POST", "/admin/cash", {"userId": user_id, "amount": -1000}, ADMIN_KEY),
        400,
        3,
        naming="amount",
    )

    trader = rest.participant()
    assert_error(rest.call("POST", "/admin/symbols", {"symbol": "NOTME"}, trader), 403, 7)
    assert_error(rest.call("POST", "/admin/users", {"userId": "x1"}), 401, 16)


def test_admin_halt_resume_close_and_open(rest: Edge) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()

    def status_of(name: str) -> str:
        symbols = rest.ok("GET", "/market/symbols")["symbols"]
        return next(info["status"] for info in symbols if info["symbol"] == name)

    assert rest.ok("POST", "/admin/market/halt", {"symbol": symbol}, ADMIN_KEY) == {}
    assert status_of(symbol) == "HALTED"
    halted = rest.place(trader, symbol, "BUY", 1, 10.0)
    assert (halted["status"], halted["rejectReason"]) == ("REJECTED", "SYMBOL_HALTED")
    assert rest.ok("POST", "/admin/market/resume", {"symbol": symbol}, ADMIN_KEY) == {}
    assert status_of(symbol) == "OPEN"

    resting = rest.place(trader, symbol, "BUY", 1, 10.0)
    try:
        assert rest.ok("POST", "/admin/market/close", {}, ADMIN_KEY) == {}
        assert status_of(symbol) == "CLOSED"
        expired = rest.ok("GET", f"/order/status/{resting['orderId']}", key=trader)
        assert expired["status"] == "EXPIRED"
        # Read your writes: the order history answers with the day close at once.
        assert rest.ok("GET", "/orders?status=open", key=trader) == {"orders": []}
        closed = rest.ok("GET", "/orders?status=closed", key=trader)["orders"]
        assert {o["orderId"]: o["status"] for o in closed}[resting["orderId"]] == "EXPIRED"
    finally:
        assert rest.ok("POST", "/admin/market/open", None, ADMIN_KEY) == {}
    assert status_of(symbol) == "OPEN"
    assert_error(rest.call("POST", "/admin/market/halt", {"symbol": "NOPE7"}, ADMIN_KEY), 404, 5)


# ---- Errors: the gRPC status as HTTP and JSON (SPEC.md section 3) ----


def test_gateway_errors_map_to_http_with_the_json_status(rest: Edge) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()
    order = {"symbol": symbol, "side": "BUY", "quantity": 1, "price": 10.0, "type": "LIMIT"}
    assert_error(rest.call("POST", "/order/place", order), 401, 16, naming="API key")
    assert_error(rest.call("POST", "/order/place", order, "wrong-key"), 401, 16)
    mismatched = {**order, "userId": "somebody-else"}
    assert_error(rest.call("POST", "/order/place", mismatched, trader), 403, 7, naming="userId")
    off_tick = {**order, "price": 10.001}
    assert_error(rest.call("POST", "/order/place", off_tick, trader), 400, 3, naming="price")
    too_many = {**order, "quantity": 1_000_001}
    assert_error(rest.call("POST", "/order/place", too_many, trader), 400, 3, naming="quantity")
    not_finite = {**order, "price": "NaN"}
    assert_error(rest.call("POST", "/order/place", not_finite, trader), 400, 3, naming="price")


def test_rate_limit_is_429_with_retry_after(rest: Edge) -> None:
    trader = rest.participant()
    for _ in range(500):
        answer = rest.call("GET", "/account", key=trader)
        if answer.status != 200:
            break
    assert_error(answer, 429, 8)
    assert int(answer.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("case", "raw", "path", "naming"),
    [
        ("malformed JSON", b'{"symbol": "S", "side": ', "/order/place", ""),
        ("not an object", b"[1, 2]", "/order/place", ""),
        ("quantity not a number", b'{"quantity": "abc"}', "/order/place", "quantity"),
        ("fractional quantity", b'{"quantity": 2.5}', "/order/place", "quantity"),
        (
            "quantity as a JSON string",
            b'{"quantity": "5"}',
            "/order/place",
            "quantity must be a JSON number, not a string",
        ),
        (
            "price as a JSON string",
            b'{"price":"100.5"}',
            "/order/place",
            "price must be a JSON number, not a string",
        ),
        ("unknown side", b'{"side": "HOLD"}', "/order/place", "side"),
        ("unknown type", b'{"type": "STOP"}', "/order/place", "type"),
        (
            "timeInForce a number that names no value",
            b'{"timeInForce": 99}',
            "/order/place",
            "timeInForce must be GFD, IOC, FOK or GTC, got 99",
        ),
        ("symbol with a trailing newline", b'{"symbol": "NL\\n"}', "/order/place", "symbol"),
        ("price not a number", b'{"price": "cheap"}', "/order/place", "price"),
        ("unknown body field", b'{"qty": 5}', "/order/place", "qty"),
        ("unknown query parameter", b"{}", "/order/place?dryRun=true", "dryRun"),
    ],
)
def test_malformed_order_is_400_and_leaves_no_trace(
    rest: Edge, exchange_stack: ExchangeStack, case: str, raw: bytes, path: str, naming: str
) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()
    valid = {"symbol": symbol, "side": "BUY", "quantity": 5, "price": 10.0, "type": "LIMIT"}
    if raw.startswith(b"{") and raw.endswith(b"}") and raw != b"{}":
        raw = json.dumps({**valid, **json.loads(raw)}).encode()
    elif raw == b"{}":
        raw = json.dumps(valid).encode()
    log_before = len(asyncio.run(read_log(exchange_stack)))

    answer = rest.call("POST", path, raw=raw, key=trader)

    assert_error(answer, 400, 3, naming=naming)
    assert len(asyncio.run(read_log(exchange_stack))) == log_before, f"{case} reached the engine"
    book = rest.ok("GET", f"/market/orderbook/{symbol}")
    assert book["bids"] == [] and book["asks"] == []
    assert rest.ok("GET", "/account", key=trader)["reservedCash"] == 0


def test_body_over_the_limit_is_413_and_leaves_no_trace(
    rest: Edge, exchange_stack: ExchangeStack
) -> None:
    symbol = rest.add_symbol()
    trader = rest.participant()
    huge = {
        "symbol": symbol,
        "side": "BUY",
        "quantity": 5,
        "price": 10.0,
        "type": "LIMIT",
        "clientOrderId": "x" * exchange_stack.edge_config().max_request_bytes,
    }
    assert_error(rest.call("POST", "/order/place", huge, trader), 413, 3)
    assert rest.ok("GET", f"/market/orderbook/{symbol}")["bids"] == []


def test_headers_over_the_limit_are_431(rest: Edge) -> None:
    answer = rest.call("GET", "/healthz", headers={"X-Padding": "p" * 40_000})
    assert_error(answer, 431, 3)


def test_unknown_paths_and_verbs_are_404_json(rest: Edge) -> None:
    assert_error(rest.call("GET", "/no/such/path"), 404, 5)
    assert_error(rest.call("GET", "/order/place"), 404, 5)
    assert_error(rest.call("PUT", "/account"), 404, 5)


def test_unknown_query_parameter_on_a_get_is_400(rest: Edge) -> None:
    symbol = rest.add_symbol()
    answer = rest.call("GET", f"/market/orderbook/{symbol}?depth=2&levels=3")
    assert_error(answer, 400, 3, naming="levels")
    assert_error(rest.call("GET", f"/market/orderbook/{symbol}?depth=abc"), 400, 3, "depth")


def test_an_upstream_that_is_down_is_503_json(stub_edge: Edge) -> None:
    # Nothing listens on the stub edge's stream_ws port, the upstream of /ws/.
    assert_error(stub_edge.call("GET", "/ws/marketdata"), 503, 14)


# ---- Browsers: CORS, gRPC-Web, WebSocket ----


def test_cors_preflight_allows_the_edges_own_origin_only(
    rest: Edge, exchange_stack: ExchangeStack
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    origin = f"http://localhost:{exchange_stack.ports.edge}"
    allowed = rest.call("OPTIONS", "/order/place", headers={"Origin": origin, **preflight})
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "x-api-key" in allowed.headers["access-control-allow-headers"]
    assert "grpc-status" in allowed.headers["access-control-expose-headers"]

    stranger = {"Origin": "http://evil.example", **preflight}
    refused = rest.call("OPTIONS", "/order/place", headers=stranger)
    assert "access-control-allow-origin" not in refused.headers


def grpc_web_call(base_url: str, method: str, request, read_messages: int | None = None):
    """A gRPC-Web call over HTTP/1.1: one framed request, then (flag, payload) frames until the
    trailers frame (flag 0x80) or `read_messages` data frames; also the response headers."""
    payload = request.SerializeToString()
    http_request = urllib.request.Request(
        base_url + method,
        data=b"\x00" + struct.pack(">I", len(payload)) + payload,
        method="POST",
        headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
    )
    frames = []
    with urllib.request.urlopen(http_request, timeout=30) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        while read_messages is None or len(frames) < read_messages:
            prefix = response.read(5)
            if len(prefix) < 5:
                break
            flag, length = prefix[0], struct.unpack(">I", prefix[1:])[0]
            frames.append((flag, response.read(length)))
            if flag & 0x80:
                break
    return headers, frames


def test_grpc_web_unary_call_and_error(rest: Edge) -> None:
    symbol = rest.add_symbol()
    headers, frames = grpc_web_call(
        rest.base_url, "/exchange.v1.BookService/ListSymbols", market_pb2.ListSymbolsRequest()
    )
    assert headers["content-type"] == "application/grpc-web+proto"
    (data_flag, data), (trailer_flag, trailers) = frames
    assert (data_flag, trailer_flag) == (0x00, 0x80)
    listed = market_pb2.ListSymbolsResponse.FromString(data)
    assert symbol in {info.symbol for info in listed.symbols}
    assert b"grpc-status:0" in trailers

    headers, frames = grpc_web_call(
        rest.base_url,
        "/exchange.v1.BookService/GetQuote",
        market_pb2.GetQuoteRequest(symbol="NOPE8"),
    )
    assert (headers["grpc-status"], frames) == ("5", [])
    assert "NOPE8" in headers["grpc-message"]


def test_grpc_web_server_stream_starts_with_the_book_snapshot(rest: Edge) -> None:
    symbol = rest.add_symbol()
    seller = rest.participant(positions={symbol: 10})
    rest.place(seller, symbol, "SELL", 7, 30.0)
    _, [(flag, message)] = grpc_web_call(
        rest.base_url,
        "/exchange.v1.StreamService/StreamMarketData",
        streams_pb2.StreamMarketDataRequest(symbols=[symbol]),
        read_messages=1,
    )
    assert flag == 0x00
    first = streams_pb2.StreamMarketDataResponse.FromString(message)
    assert first.book.snapshot and first.book.symbol == symbol
    assert [(level.price, level.quantity) for level in first.book.asks] == [(30.0, 7)]


async def test_websocket_market_data_through_the_edge(exchange_stack: ExchangeStack) -> None:
    if not processes.port_open(exchange_stack.ports.stream_ws):
        pytest.skip("stream_svc has no WebSocket server listening yet")
    from websockets.asyncio.client import connect

    rest = Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")
    symbol = await asyncio.to_thread(rest.add_symbol)
    url = f"ws://127.0.0.1:{exchange_stack.ports.edge}/ws/marketdata?symbols={symbol}"
    async with connect(url) as websocket:
        first = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    assert (first["type"], first["symbol"], first["snapshot"]) == ("book", symbol, True)


# ---- Every gRPC code of SPEC.md section 3, against a stub gateway ----


class StatusOnDemand(accounts_pb2_grpc.HealthServiceServicer):
    """GetHealth fails with the code named in the `x-test-code` header, after `x-test-sleep`."""

    def GetHealth(self, request, context):
        metadata = dict(context.invocation_metadata())
        time.sleep(float(metadata.get("x-test-sleep", 0)))
        code = grpc.StatusCode[metadata.get("x-test-code", "OK")]
        if code != grpc.StatusCode.OK:
            context.abort(code, f"stub says {code.name}: naïve field 'x' (100%)")
        return accounts_pb2.GetHealthResponse(status="SERVING")


@pytest.fixture(scope="module")
def stub_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """Envoy in front of a stub gRPC server, with a 2 s route timeout."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    accounts_pb2_grpc.add_HealthServiceServicer_to_server(StatusOnDemand(), server)
    stub_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    config = edge.EdgeConfig(
        port=processes.free_port(),
        admin_port=processes.free_port(),
        gateway_port=stub_port,
        stream_ws_port=processes.free_port(),
        upstream_timeout_seconds=2,
        workers=1,
    )
    data_dir: Path = tmp_path_factory.mktemp("stub-edge")
    envoy = processes.start_envoy(config, data_dir)
    try:
        yield Edge(f"http://127.0.0.1:{config.port}")
    finally:
        envoy.stop()
        server.stop(grace=None)


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
def test_every_grpc_code_maps_to_its_http_status_and_json_body(
    stub_edge: Edge, code: grpc.StatusCode, http_status: int
) -> None:
    answer = stub_edge.call("GET", "/healthz", headers={"X-Test-Code": code.name})
    assert answer.body == {
        "code": code.value[0],
        "message": f"stub says {code.name}: naïve field 'x' (100%)",
        "details": [],
    }
    assert answer.status == http_status


def test_route_timeout_is_504_deadline_exceeded(stub_edge: Edge) -> None:
    answer = stub_edge.call("GET", "/healthz", headers={"X-Test-Sleep": "3"})
    assert_error(answer, 504, 4)


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "message"),
    [
        (
            "POST",
            "/order/place",
            b'{"symbol": "{symbol}", "side": "buy", "type": "LIMIT", "quantity": 1, "price": 1}',
            400,
            'side must be BUY or SELL, got "buy"',
        ),
        (
            "POST",
            "/order/place",
            b'{"symbol": "{symbol}", "side": "BUY", "type": "LIMT", "quantity": 1, "price": 1}',
            400,
            'type must be LIMIT or MARKET, got "LIMT"',
        ),
        (
            "GET",
            "/market/orderbook/{symbol}?levels=3",
            None,
            400,
            'unknown query parameter "levels" (allowed: depth)',
        ),
        (
            "POST",
            "/order/place",
            b'{"symbol": "S", "side": ',
            400,
            "body is not valid JSON: Unexpected end of string. Expected a value.",
        ),
        (
            "POST",
            "/order/cancel/abc",
            b"{}",
            404,
            "no such path: POST /order/cancel/abc; see GET /openapi.json",
        ),
    ],
)
def test_the_transcoders_errors_are_in_a_participants_words(
    rest: Edge, method: str, path: str, raw: bytes | None, status: int, message: str
) -> None:
    symbol = rest.add_symbol()
    key = rest.participant()
    raw = raw.replace(b"{symbol}", symbol.encode()) if raw is not None else None
    answer = rest.call(method, path.replace("{symbol}", symbol), raw=raw, key=key)
    assert_error(answer, status, 3 if status == 400 else 5)
    assert answer.body["message"] == message


def test_openapi_json_is_served(rest: Edge) -> None:
    answer = rest.call("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.body["openapi"].startswith("3.")
    assert "/order/place" in answer.body["paths"]
