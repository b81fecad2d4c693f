"""ETF conversion on the real stack: POST /orders/convert through Envoy, the account after it,
the listing with its basket, the errors, and the order-updates stream (docs/matching.md, "ETF
conversion").

Each test lists its own components and ETF: a unit is 1 of the first component and 2 of the
second, for a flat fee of 2.50 a request.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import grpc
import pytest

from exchange.v1 import orders_pb2, streams_pb2, types_pb2
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.exchange_client import Participant
from tests.integration.test_rest_edge import Edge

pytestmark = pytest.mark.integration

FEE = 2.5


@dataclass(frozen=True)
class Listing:
    etf: str
    first: str
    """1 share per unit, reference price 40."""
    second: str
    """2 shares per unit, reference price 25."""


@pytest.fixture(scope="module")
def rest(exchange_stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")


@pytest.fixture
def listing(rest: Edge) -> Listing:
    tag = uuid.uuid4().hex[:5].upper()
    first, second, etf = f"CA{tag}", f"CB{tag}", f"ETF{tag}"
    rest.ok("POST", "/admin/symbols", {"symbol": first, "referencePrice": 40.0}, ADMIN_KEY)
    rest.ok("POST", "/admin/symbols", {"symbol": second, "referencePrice": 25.0}, ADMIN_KEY)
    listed = rest.ok(
        "POST",
        "/admin/symbols",
        {"symbol": etf, "basket": {first: 1, second: 2}, "conversionFee": FEE},
        ADMIN_KEY,
    )
    assert (listed["basket"], listed["conversionFee"]) == ({first: 1, second: 2}, FEE)
    return Listing(etf, first, second)


def held(rest: Edge, key: str) -> tuple[float, dict[str, int]]:
    """Cash and every non-zero position of the key's account."""
    account = rest.ok("GET", "/account", key=key)
    positions = {p["symbol"]: p["quantity"] for p in account["positions"] if p["quantity"]}
    return account["cash"], positions


def convert(rest: Edge, key: str, symbol: str, direction: str, quantity: int) -> dict:
    body = {"symbol": symbol, "direction": direction, "quantity": quantity}
    return rest.ok("POST", "/orders/convert", body, key)


def test_the_listing_shows_the_basket_and_the_fee(rest: Edge, listing: Listing) -> None:
    symbols = {s["symbol"]: s for s in rest.ok("GET", "/market/symbols")["symbols"]}
    etf, component = symbols[listing.etf], symbols[listing.first]
    assert etf["basket"] == {listing.first: 1, listing.second: 2}
    assert etf["conversionFee"] == FEE
    assert (component["basket"], component["conversionFee"]) == ({}, 0)


def test_bought_components_create_a_unit_that_redeems_back(rest: Edge, listing: Listing) -> None:
    seller = rest.participant(positions={listing.first: 10, listing.second: 20})
    buyer = rest.participant(cash=10_000.0)
    rest.place(seller, listing.first, "SELL", 1, 40.0)
    rest.place(seller, listing.second, "SELL", 2, 25.0)
    assert rest.place(buyer, listing.first, "BUY", 1, 40.0)["status"] == "FILLED"
    assert rest.place(buyer, listing.second, "BUY", 2, 25.0)["status"] == "FILLED"
    cash, positions = held(rest, buyer)
    assert (cash, positions) == (10_000.0 - 90.0, {listing.first: 1, listing.second: 2})

    created = convert(rest, buyer, listing.etf, "CREATE", 1)
    assert (created["status"], created["direction"], created["quantity"]) == ("FILLED", "CREATE", 1)
    assert (created["fee"], created["rejectReason"], created["symbol"]) == (FEE, "", listing.etf)
    assert created["conversionId"] and created["timestamp"]
    assert [(leg["symbol"], leg["quantity"], leg["position"]) for leg in created["legs"]] == [
        (listing.etf, 1, 1),
        (listing.first, -1, 0),
        (listing.second, -2, 0),
    ]
    assert held(rest, buyer) == (cash - FEE, {listing.etf: 1})

    redeemed = convert(rest, buyer, listing.etf, "REDEEM", 1)
    assert (redeemed["status"], redeemed["fee"]) == ("FILLED", FEE)
    assert held(rest, buyer) == (cash - 2 * FEE, {listing.first: 1, listing.second: 2})
    account = rest.ok("GET", "/account", key=buyer)
    # Nothing traded at a new price: the P&L is the two fees.
    assert account["pnl"] == -2 * FEE


def test_missing_components_are_rejected_and_nothing_moves(rest: Edge, listing: Listing) -> None:
    key = rest.participant(cash=1_000.0, positions={listing.first: 3, listing.second: 5})
    before = held(rest, key)
    rejected = convert(rest, key, listing.etf, "CREATE", 3)
    assert (rejected["status"], rejected["rejectReason"]) == ("REJECTED", "INSUFFICIENT_POSITION")
    assert rejected["message"] == (
        f"{listing.second}: the conversion needs 6, 5 available (5 held, 0 of them for open "
        "SELL orders)"
    )
    assert (rejected["legs"], rejected["fee"]) == ([], 0)
    assert held(rest, key) == before


def test_shares_an_open_sell_holds_cannot_be_converted(rest: Edge, listing: Listing) -> None:
    key = rest.participant(positions={listing.first: 1, listing.second: 2})
    order = rest.place(key, listing.first, "SELL", 1, 99.0)
    rejected = convert(rest, key, listing.etf, "CREATE", 1)
    assert rejected["rejectReason"] == "INSUFFICIENT_POSITION"
    assert "1 of them for open SELL orders" in rejected["message"]
    rest.ok("DELETE", f"/order/{order['orderId']}", key=key)
    assert convert(rest, key, listing.etf, "CREATE", 1)["status"] == "FILLED"


def test_the_fee_needs_available_cash(rest: Edge, listing: Listing) -> None:
    key = rest.participant(cash=1.0, positions={listing.first: 1, listing.second: 2})
    rejected = convert(rest, key, listing.etf, "CREATE", 1)
    assert rejected["rejectReason"] == "INSUFFICIENT_CASH"
    assert rejected["message"] == "the conversion fee of 2.5 is more than the available cash of 1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"direction": "CREATE", "quantity": 1}, "symbol is required"),
        ({"symbol": "{first}", "direction": "CREATE", "quantity": 1}, "symbol {first} is not an"),
        ({"symbol": "NOPE", "direction": "CREATE", "quantity": 1}, "symbol NOPE is not listed"),
        ({"symbol": "{etf}", "quantity": 1}, "direction is required: CREATE or REDEEM"),
        (
            {"symbol": "{etf}", "direction": "HOLD", "quantity": 1},
            'direction must be CREATE or REDEEM, got "HOLD"',
        ),
        ({"symbol": "{etf}", "direction": "CREATE", "quantity": 0}, "quantity must be a positive"),
        ({"symbol": "{etf}", "direction": "CREATE", "quantity": -2}, "quantity must be a positive"),
        ({"symbol": "{etf}", "direction": "CREATE", "units": 1}, 'unknown field "units"'),
    ],
)
def test_a_bad_request_is_400_naming_the_field(
    rest: Edge, listing: Listing, body: dict, message: str
) -> None:
    names = {"etf": listing.etf, "first": listing.first}
    body = {field: str(value).format(**names) for field, value in body.items()}
    if "quantity" in body:
        body["quantity"] = int(body["quantity"])
    key = rest.participant()
    answer = rest.call("POST", "/orders/convert", body, key)
    assert answer.status == 400, answer.body
    assert answer.body["code"] == 3
    assert message.format(**names) in answer.body["message"]


def test_a_symbol_that_is_no_etf_is_answered_with_the_etfs(rest: Edge, listing: Listing) -> None:
    body = {"symbol": listing.first, "direction": "CREATE", "quantity": 1}
    answer = rest.call("POST", "/orders/convert", body, rest.participant())
    assert answer.status == 400
    assert "only an ETF converts, and the ETFs are" in answer.body["message"]
    assert listing.etf in answer.body["message"]


def test_an_unlisted_component_or_a_fee_without_basket_is_400(rest: Edge) -> None:
    tag = uuid.uuid4().hex[:5].upper()
    bad = {"symbol": f"BAD{tag}", "basket": {f"ZZ{tag}": 1}}
    answer = rest.call("POST", "/admin/symbols", bad, ADMIN_KEY)
    assert (answer.status, answer.body["code"]) == (400, 3)
    assert answer.body["message"].startswith(f"basket: symbol ZZ{tag} is not listed")
    answer = rest.call(
        "POST", "/admin/symbols", {"symbol": f"FEE{tag}", "conversionFee": 1.0}, ADMIN_KEY
    )
    assert answer.status == 400
    assert "conversionFee applies only to a symbol listed with a basket" in answer.body["message"]


async def test_the_order_updates_stream_carries_the_conversion(
    exchange_stack: ExchangeStack, rest: Edge, listing: Listing
) -> None:
    key = rest.participant(positions={listing.first: 2, listing.second: 4})
    user_id = rest.ok("GET", "/account", key=key)["userId"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{exchange_stack.ports.gateway}") as channel:
        caller = Participant(channel, user_id, key)
        call = caller.streams.StreamOrderUpdates(
            streams_pb2.StreamOrderUpdatesRequest(), metadata=caller.metadata, timeout=30
        )
        updates: asyncio.Queue[streams_pb2.StreamOrderUpdatesResponse] = asyncio.Queue()
        reader = asyncio.ensure_future(_read_into(call, updates))
        await _subscribed(caller, listing.first, updates)
        answer = await caller.orders.Convert(
            orders_pb2.ConvertRequest(symbol=listing.etf, direction=types_pb2.CREATE, quantity=2),
            metadata=caller.metadata,
            timeout=15,
        )
        message = await asyncio.wait_for(updates.get(), 10)
        while message.WhichOneof("payload") != "conversion":
            message = await asyncio.wait_for(updates.get(), 10)
        reader.cancel()
        call.cancel()
    assert answer.conversion.status == types_pb2.FILLED
    assert message.conversion == answer.conversion


async def _read_into(call, updates: asyncio.Queue) -> None:
    async for message in call:
        updates.put_nowait(message)


async def _subscribed(caller: Participant, symbol: str, updates: asyncio.Queue) -> None:
    """The stream service takes the subscription after the call opens: it is live once an order
    placed after that reaches the stream (a resting BUY far below the market, which holds no
    shares)."""
    for _ in range(40):
        await caller.place(symbol, "BUY", 1, 0.01)
        try:
            await asyncio.wait_for(updates.get(), 0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError("the order updates stream did not start")
