"""The gateway's checks of an amend (gateway_svc.validation.amend_order_command): the engine
command for a valid change, else INVALID_ARGUMENT naming the field as participants write it."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from exchange.v1 import orders_pb2, types_pb2
from gateway_svc.validation import RequestError, SymbolSpec, amend_order_command

SPEC = SymbolSpec("ACME", Decimal("0.05"), 5, 100.0)
ORDER = types_pb2.Order(order_id="o-1", symbol="ACME", price=101.05, quantity=20, filled_quantity=5)


def command(**change):
    return amend_order_command(
        orders_pb2.AmendOrderRequest(order_id="o-1", **change), "alice", ORDER, SPEC
    )


def test_a_price_only_amend_carries_the_price_in_ticks_and_no_quantity() -> None:
    amend = command(price=100.5)
    assert (amend.order_id, amend.user_id, amend.price_ticks) == ("o-1", "alice", 2010)
    assert not amend.HasField("quantity")


def test_a_quantity_only_amend_carries_no_price() -> None:
    amend = command(quantity=10)
    assert amend.quantity == 10 and not amend.HasField("price_ticks")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "nothing to change: give price, quantity or both"),
        ({"price": 101.05, "quantity": 20}, "nothing to change: order o-1 is already 20 at 101.05"),
        ({"price": 101.05}, "nothing to change"),
        ({"price": 0.0}, "price must be a positive number, got 0.0"),
        ({"price": float("nan")}, "price must be a positive number, got nan"),
        ({"price": 100.01}, "price 100.01 is not a whole number of ticks (0.05)"),
        ({"price": 1e9}, "price 1000000000.0 is over the maximum of 10000000"),
        ({"quantity": 0}, "quantity must be a positive integer, got 0"),
        ({"quantity": -5}, "quantity must be a positive integer, got -5"),
        ({"quantity": 12}, "quantity 12 is not a multiple of the lot size 5"),
        ({"quantity": 1_000_005}, "quantity 1000005 is over the maximum of 1000000"),
        ({"quantity": 5}, "quantity 5 must be above the filledQuantity 5"),
    ],
)
def test_bad_amends_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(RequestError) as refused:
        command(**change)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.message.startswith(message), refused.value.message
