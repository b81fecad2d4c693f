"""The generated OpenAPI document describes exactly the REST surface of SPEC.md section 3."""

from pathlib import Path

import pytest

from mockex.access import access_of
from mockex.openapi import build
from mockex.processes import REPO_ROOT

DESCRIPTOR_SET = REPO_ROOT / "build" / "proto" / "exchange.pb"

SPEC_ROUTES = {
    ("post", "/order/place"),
    ("get", "/order/status/{orderId}"),
    ("delete", "/order/{orderId}"),
    ("get", "/orders"),
    ("get", "/market/symbols"),
    ("get", "/market/quote/{symbol}"),
    ("get", "/market/orderbook/{symbol}"),
    ("get", "/market/trades/{symbol}"),
    ("get", "/market/candles/{symbol}"),
    ("get", "/account"),
    ("get", "/leaderboard"),
    ("get", "/healthz"),
    ("post", "/admin/users"),
    ("post", "/admin/market/open"),
    ("post", "/admin/market/close"),
    ("post", "/admin/market/halt"),
    ("post", "/admin/market/resume"),
    ("post", "/admin/symbols"),
    ("get", "/news"),
    ("get", "/schedule"),
}
EXTRA_ROUTES = {  # beyond SPEC.md (docs/edge.md): organizer tools, cancel-all, amend
    ("post", "/admin/cash"),
    ("get", "/admin/users"),
    ("post", "/admin/keys/rotate"),
    ("post", "/admin/keys/revoke"),
    ("post", "/admin/users/disable"),
    ("post", "/admin/users/enable"),
    ("post", "/admin/news"),
    ("get", "/admin/rules"),
    ("post", "/admin/rules"),
    ("post", "/admin/rounds/start"),
    ("post", "/admin/rounds/end"),
    ("post", "/orders/cancel-all"),
    ("post", "/order/amend"),
    ("post", "/orders/convert"),
    ("post", "/admin/scenario"),
    ("post", "/admin/scenario/load"),
    ("get", "/admin/scenarios"),
    ("get", "/report"),
    ("get", "/admin/results"),
    ("get", "/admin/simulator"),
}


@pytest.fixture(scope="module")
def document() -> dict:
    assert Path(DESCRIPTOR_SET).exists(), "run `make proto` first"
    return build(DESCRIPTOR_SET)


def test_every_spec_route_and_no_other(document):
    routes = {(verb, path) for path, item in document["paths"].items() for verb in item}
    assert routes == SPEC_ROUTES | EXTRA_ROUTES


def test_order_object_has_the_spec_field_names(document):
    order = document["components"]["schemas"]["Order"]["properties"]
    for name in (
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
    ):
        assert name in order
    assert order["createdAt"] == {"type": "string", "format": "date-time"}
    assert order["price"]["type"] == "number"
    assert order["quantity"]["type"] == "integer"


def test_query_parameters_and_response_bodies(document):
    book = document["paths"]["/market/orderbook/{symbol}"]["get"]
    assert {p["name"]: p["in"] for p in book["parameters"]} == {"symbol": "path", "depth": "query"}
    place = document["paths"]["/order/place"]["post"]
    assert place["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Order"
    }
    assert place["responses"]["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_internal_services_are_not_published(document):
    assert "StoreService" not in str(document)
    assert "EngineCommand" not in document["components"]["schemas"]


@pytest.mark.parametrize(
    ("verb", "path", "needs_key", "admin"),
    [
        ("get", "/market/orderbook/{symbol}", False, False),
        ("get", "/market/symbols", False, False),
        ("get", "/leaderboard", False, False),
        ("get", "/healthz", False, False),
        ("get", "/account", True, False),
        ("post", "/order/place", True, False),
        ("get", "/report", True, False),
        ("post", "/admin/users", True, True),
        ("get", "/admin/simulator", True, True),
    ],
)
def test_security_is_the_gateways_access_table(document, verb, path, needs_key, admin):
    """The document says what the gateway enforces (mockex.access): public reads need no key
    and cannot answer 401 or 403; everything else needs one, admin calls an admin key."""
    operation = document["paths"][path][verb]
    security = operation.get("security", document["security"])
    assert (security == [{"apiKey": []}]) is needs_key
    assert ("401" in operation["responses"]) is needs_key
    assert ("admin API key" in operation.get("description", "")) is admin


def test_every_route_has_an_access_rule(document):
    for item in document["paths"].values():
        for operation in item.values():
            service, method = operation["operationId"].split(".")
            assert access_of(service, method) is not None, operation["operationId"]
