"""A small gRPC client for the integration tests: the admin and participants of one exchange."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from exchange.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    market_pb2,
    market_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    streams_pb2_grpc,
    types_pb2,
)

T = TypeVar("T")


def place_request(
    symbol: str,
    side: str,
    quantity: int,
    price: float = 0.0,
    type: str = "LIMIT",
    tif: str = "",
    **extra,
) -> orders_pb2.PlaceOrderRequest:
    return orders_pb2.PlaceOrderRequest(
        symbol=symbol,
        side=types_pb2.Side.Value(side),
        quantity=quantity,
        price=price,
        type=types_pb2.OrderType.Value(type),
        time_in_force=types_pb2.TimeInForce.Value(tif) if tif else 0,
        **extra,
    )


class Participant:
    def __init__(self, channel: grpc.aio.Channel, user_id: str, api_key: str) -> None:
        self.user_id = user_id
        self.api_key = api_key
        self.metadata = (("x-api-key", api_key),)
        self.orders = orders_pb2_grpc.OrderServiceStub(channel)
        self.book = market_pb2_grpc.BookServiceStub(channel)
        self.trades = market_pb2_grpc.TradeServiceStub(channel)
        self.accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        self.streams = streams_pb2_grpc.StreamServiceStub(channel)

    async def place(
        self,
        symbol: str,
        side: str,
        quantity: int,
        price: float = 0.0,
        type: str = "LIMIT",
        tif: str = "",
        **extra,
    ) -> types_pb2.Order:
        request = place_request(symbol, side, quantity, price, type, tif, **extra)
        answer = await self.orders.PlaceOrder(request, metadata=self.metadata, timeout=15)
        return answer.order

    async def cancel(self, order_id: str) -> types_pb2.Order:
        answer = await self.orders.CancelOrder(
            orders_pb2.CancelOrderRequest(order_id=order_id), metadata=self.metadata, timeout=15
        )
        return answer.order

    async def get(self, order_id: str) -> types_pb2.Order:
        answer = await self.orders.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), metadata=self.metadata, timeout=15
        )
        return answer.order

    async def account(self) -> accounts_pb2.GetAccountResponse:
        return await self.accounts.GetAccount(
            accounts_pb2.GetAccountRequest(), metadata=self.metadata, timeout=15
        )

    async def order_book(self, symbol: str) -> types_pb2.OrderBook:
        answer = await self.book.GetOrderBook(
            market_pb2.GetOrderBookRequest(symbol=symbol), timeout=15
        )
        return answer.book


class Exchange:
    """The admin's view: lists symbols and creates participants."""

    def __init__(self, channel: grpc.aio.Channel, admin_key: str) -> None:
        self.channel = channel
        self.admin_metadata = (("x-api-key", admin_key),)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)

    async def add_symbol(
        self,
        symbol: str | None = None,
        tick_size: float = 0.01,
        lot_size: int = 1,
        reference_price: float = 100.0,
    ) -> str:
        """A new symbol; granted positions are valued at `reference_price` unless told."""
        symbol = symbol or "S" + uuid.uuid4().hex[:6].upper()
        await self.admin.AddSymbol(
            admin_pb2.AddSymbolRequest(
                symbol=symbol,
                tick_size=tick_size,
                lot_size=lot_size,
                reference_price=reference_price,
            ),
            metadata=self.admin_metadata,
            timeout=15,
        )
        return symbol

    async def participant(
        self, cash: float = 1_000_000.0, positions: dict[str, int] | None = None
    ) -> Participant:
        user_id = "u" + uuid.uuid4().hex[:10]
        created = await self.admin.CreateUser(
            admin_pb2.CreateUserRequest(user_id=user_id, cash=cash, positions=positions or {}),
            metadata=self.admin_metadata,
            timeout=15,
        )
        return Participant(self.channel, created.user_id, created.api_key)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; the store and caches lag by design."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
            if result:
                return result
        except grpc.aio.AioRpcError as exc:
            last_error = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last error: {last_error}")
