"""The gateway's checks of ETF requests before they reach the engine: POST /orders/convert and
the basket of POST /admin/symbols. Each error names the field and what it may be."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from exchange.v1 import admin_pb2, orders_pb2, types_pb2
from gateway_svc.validation import (
    MAX_BASKET_COMPONENTS,
    RequestError,
    SymbolSpec,
    add_symbol_command,
    convert_command,
)

TRIO = SymbolSpec("TRIO", Decimal("0.01"), 1, 0.0, convertible=True)
FUND = SymbolSpec("FUND", Decimal("0.01"), 10, 0.0, convertible=True)
ALPHA = SymbolSpec("ALPHA", Decimal("0.01"), 1, 40.0)
ETFS = ("TRIO", "FUND")


def convert(spec: SymbolSpec | None = TRIO, **fields):
    request = orders_pb2.ConvertRequest(
        **{"symbol": "TRIO", "direction": types_pb2.CREATE, "quantity": 1, **fields}
    )
    return convert_command(request, "alice", spec, "c1", ETFS)


def refusal(call, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_a_valid_conversion_becomes_the_engine_command():
    command = convert(direction=types_pb2.REDEEM, quantity=30)
    assert (command.conversion_id, command.user_id, command.symbol) == ("c1", "alice", "TRIO")
    assert (command.direction, command.quantity) == (types_pb2.REDEEM, 30)


def test_the_user_id_if_given_must_be_the_callers():
    assert convert(user_id="alice").user_id == "alice"
    error = refusal(convert, user_id="bob")
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert "userId 'bob'" in error.message


def test_a_symbol_that_is_no_etf_names_the_etfs():
    error = refusal(convert, ALPHA, symbol="ALPHA")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith(
        "symbol ALPHA is not an ETF (it has no basket): only an ETF converts, and the ETFs "
        "are FUND, TRIO"
    )


def test_an_unlisted_symbol_names_the_etfs():
    error = refusal(convert, None, symbol="NOPE")
    assert error.message.startswith("symbol NOPE is not listed: only an ETF converts, and the")
    assert "the ETFs are FUND, TRIO" in error.message


def test_without_etfs_the_error_says_none_is_listed():
    request = orders_pb2.ConvertRequest(symbol="ALPHA", direction=types_pb2.CREATE, quantity=1)
    error = refusal(convert_command, request, "alice", ALPHA, "c1", ())
    assert "only an ETF converts, and no ETF is listed" in error.message


@pytest.mark.parametrize("symbol", ["", "trio", "TOO.LONG.NAME.X"])
def test_the_symbol_must_be_a_symbol_name(symbol):
    assert refusal(convert, symbol=symbol).message.startswith("symbol")


def test_the_direction_is_create_or_redeem():
    error = refusal(convert, direction=types_pb2.CONVERSION_DIRECTION_UNSPECIFIED)
    assert error.message == "direction is required: CREATE or REDEEM"


@pytest.mark.parametrize("quantity", [0, -5, 1_000_001])
def test_the_quantity_is_a_positive_whole_number_up_to_the_maximum(quantity):
    error = refusal(convert, quantity=quantity)
    assert error.message == (
        f"quantity must be a positive whole number of ETF units, at most 1000000, got {quantity}"
    )


def test_the_quantity_is_whole_lots_of_the_etf():
    assert convert(FUND, symbol="FUND", quantity=20).quantity == 20
    error = refusal(convert, FUND, symbol="FUND", quantity=15)
    assert error.message == "quantity 15 is not a multiple of FUND's lot size 10"


# ---- listing an ETF ---------------------------------------------------------------------------


def listing(**fields) -> admin_pb2.AddSymbolRequest:
    return admin_pb2.AddSymbolRequest(symbol="TRIO", **fields)


def test_a_basket_and_fee_become_the_listing_command():
    add = add_symbol_command(listing(basket={"BETA": 2, "ALPHA": 1}, conversion_fee=5.25))
    assert [(c.symbol, c.shares) for c in add.basket] == [("ALPHA", 1), ("BETA", 2)]
    assert add.conversion_fee_units == 52_500


def test_an_ordinary_symbol_has_no_basket_and_no_fee():
    add = add_symbol_command(listing())
    assert (list(add.basket), add.conversion_fee_units) == ([], 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"basket": {"ALPHA": 0}}, "basket: ALPHA must be a whole number of shares from 1 to 1000"),
        ({"basket": {"ALPHA": 1001}}, "basket: ALPHA must be a whole number of shares from 1"),
        ({"basket": {"alpha": 1}}, "basket 'alpha' is not a symbol"),
        ({"conversion_fee": 1.0}, "conversionFee applies only to a symbol listed with a basket"),
        ({"basket": {"ALPHA": 1}, "conversion_fee": -1.0}, "conversionFee must be zero or"),
        ({"basket": {"ALPHA": 1}, "conversion_fee": 0.00001}, "conversionFee 1e-05 has more"),
    ],
)
def test_a_bad_basket_or_fee_is_refused_naming_the_field(fields, message):
    error = refusal(add_symbol_command, listing(**fields))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith(message)


def test_a_basket_has_a_bounded_number_of_components():
    basket = {f"C{n}": 1 for n in range(MAX_BASKET_COMPONENTS + 1)}
    error = refusal(add_symbol_command, listing(basket=basket))
    assert error.message == f"basket: at most {MAX_BASKET_COMPONENTS} components"
