"""The gateway's checks of a participant's fields, as pure functions: the message names the
field as participants write it and lists the valid values; nothing malformed gets through."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from exchange.v1 import admin_pb2, orders_pb2, types_pb2
from gateway_svc.validation import (
    RequestError,
    SymbolSpec,
    check_symbol_name,
    check_user_id,
    create_account_command,
    place_order_command,
)

SPEC = SymbolSpec("ACME", Decimal("0.01"), 1, 100.0)


def refusal(**fields) -> str:
    request = orders_pb2.PlaceOrderRequest(
        symbol="ACME", side=types_pb2.BUY, type=types_pb2.LIMIT, quantity=10, price=10.0
    )
    for field, value in fields.items():
        setattr(request, field, value)
    with pytest.raises(RequestError) as refused:
        place_order_command(request, "alice", SPEC, "o-1")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return refused.value.message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"side": 0}, "side is required: BUY or SELL"),
        ({"side": 7}, "side must be BUY or SELL, got 7"),
        ({"type": 0}, "type is required: LIMIT or MARKET"),
        ({"type": 99}, "type must be LIMIT or MARKET, got 99"),
        ({"time_in_force": 99}, "timeInForce must be GFD, IOC, FOK or GTC, got 99"),
        (
            {"type": types_pb2.MARKET, "time_in_force": types_pb2.GTC},
            "timeInForce GTC is not allowed for a MARKET order: IOC or FOK",
        ),
        ({"quantity": 0}, "quantity is required: a positive integer"),
        ({"quantity": -3}, "quantity must be a positive integer, got -3"),
    ],
)
def test_enum_and_required_fields_name_the_valid_values(fields: dict, message: str) -> None:
    assert refusal(**fields) == message


@pytest.mark.parametrize("tif", [types_pb2.GFD, types_pb2.IOC, types_pb2.FOK, types_pb2.GTC])
def test_every_named_time_in_force_is_taken_for_a_limit_order(tif: int) -> None:
    request = orders_pb2.PlaceOrderRequest(
        symbol="ACME", side=types_pb2.SELL, type=types_pb2.LIMIT, quantity=5, price=10.0
    )
    request.time_in_force = tif
    assert place_order_command(request, "alice", SPEC, "o-1").time_in_force == tif


@pytest.mark.parametrize("symbol", ["NL\n", "ACME\n", "acme", "A" * 13, " ACME"])
def test_symbols_are_matched_whole(symbol: str) -> None:
    with pytest.raises(RequestError, match="is not a symbol"):
        check_symbol_name(symbol)


@pytest.mark.parametrize("user_id", ["bob\n", "bob ", "", "b" * 65, "bob/1"])
def test_user_ids_are_matched_whole(user_id: str) -> None:
    with pytest.raises(RequestError, match="userId"):
        check_user_id(user_id)


@pytest.mark.parametrize("user_id", ["admin", "Admin", "ADMIN"])
def test_the_organizers_user_id_cannot_be_created(user_id: str) -> None:
    with pytest.raises(RequestError, match="is reserved: the organizer's key"):
        create_account_command(admin_pb2.CreateUserRequest(user_id=user_id), "sha", {})


def test_an_ordinary_user_id_is_created() -> None:
    create = create_account_command(admin_pb2.CreateUserRequest(user_id="team-7"), "sha", {})
    assert create.user_id == "team-7"
