"""Benchmark order-flow files (SPEC.md section 6): read them into tuples, write them back.

A flow is a CSV with the header `op,order_id,side,type,tif,price,quantity`. `op` is `N` (new
order) or `C` (cancel `order_id`; the other fields of a cancel are ignored). Reading parses the
whole file into a list of `Message` tuples up front, so a benchmark times matching, not parsing.
Sides, types and times in force become the engine's enum members, the values production passes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from engine_svc.orders import OrderType, Side, TimeInForce

HEADER = ("op", "order_id", "side", "type", "tif", "price", "quantity")
NEW = "N"
CANCEL = "C"

SIDES = {"B": Side.BUY, "S": Side.SELL}
TYPES = {"L": OrderType.LIMIT, "M": OrderType.MARKET}
TIME_IN_FORCE = {"GFD": TimeInForce.GFD, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
SIDE_CODES = {value: code for code, value in SIDES.items()}
TYPE_CODES = {value: code for code, value in TYPES.items()}
TIME_IN_FORCE_CODES = {value: code for code, value in TIME_IN_FORCE.items()}


class Message(NamedTuple):
    """One line of a flow. A cancel carries only its order id (side/type/tif None, 0 numbers)."""

    op: str
    order_id: str
    side: Side | None
    type: OrderType | None
    tif: TimeInForce | None
    price: int
    quantity: int


def new_order(
    order_id: str, side: Side, type: OrderType, tif: TimeInForce, price: int, quantity: int
) -> Message:
    return Message(NEW, order_id, side, type, tif, price, quantity)


def cancel(order_id: str) -> Message:
    return Message(CANCEL, order_id, None, None, None, 0, 0)


class FlowFormatError(ValueError):
    """A flow file line that does not follow SPEC.md section 6."""


def _field(table: dict, value: str, name: str, line: int):
    try:
        return table[value]
    except KeyError:
        raise FlowFormatError(
            f"line {line}: {name} {value!r} is not one of {sorted(table)}"
        ) from None


def _integer(value: str, name: str, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise FlowFormatError(f"line {line}: {name} {value!r} is not an integer") from None


def parse_rows(rows: Iterable[list[str]]) -> list[Message]:
    """Rows of a flow CSV, header first, into messages."""
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None or tuple(field.strip() for field in header) != HEADER:
        raise FlowFormatError(f"line 1: header must be {','.join(HEADER)}, got {header!r}")
    messages: list[Message] = []
    append = messages.append
    for line, row in enumerate(iterator, start=2):
        if not row:
            continue
        if len(row) != len(HEADER):
            raise FlowFormatError(f"line {line}: expected {len(HEADER)} fields, got {len(row)}")
        op, order_id, side, type_, tif, price, quantity = row
        if not order_id:
            raise FlowFormatError(f"line {line}: order_id is empty")
        if op == NEW:
            append(
                Message(
                    NEW,
                    order_id,
                    _field(SIDES, side, "side", line),
                    _field(TYPES, type_, "type", line),
                    _field(TIME_IN_FORCE, tif, "tif", line),
                    _integer(price, "price", line) if price else 0,
                    _integer(quantity, "quantity", line),
                )
            )
        elif op == CANCEL:
            append(cancel(order_id))
        else:
            raise FlowFormatError(f"line {line}: op {op!r} is not N or C")
    return messages


def read_flow(path: str | Path) -> list[Message]:
    """The whole flow file as a list of messages (parsed before any timing starts)."""
    with open(path, newline="", encoding="ascii") as file:
        return parse_rows(csv.reader(file))


def format_message(message: Message) -> str:
    if message.op == CANCEL:
        return f"C,{message.order_id},,,,,"
    return (
        f"N,{message.order_id},{SIDE_CODES[message.side]},{TYPE_CODES[message.type]},"
        f"{TIME_IN_FORCE_CODES[message.tif]},{message.price},{message.quantity}"
    )


def write_flow(path: str | Path, messages: Iterable[Message]) -> int:
    """Write messages as a flow file; returns how many were written."""
    count = 0
    with open(path, "w", newline="", encoding="ascii") as file:
        file.write(",".join(HEADER) + "\n")
        lines = []
        for message in messages:
            lines.append(format_message(message))
            count += 1
            if len(lines) >= 10_000:
                file.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            file.write("\n".join(lines) + "\n")
    return count
