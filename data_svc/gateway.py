"""The simulator's way into the exchange: the public gRPC API, as the organizer (admin key) and
as each bot (its own key), like any participant's program. It never writes to the engine's
command queue.

An UNAVAILABLE answer (a gateway or engine restarting) is retried with back-off: every call the
simulator makes is safe to repeat (admin operations are idempotent at the engine, orders carry
clientOrderIds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from data_svc.agents import CancelOrder, PlaceOrder
from exchange.v1 import admin_pb2_grpc, market_pb2_grpc, orders_pb2, orders_pb2_grpc
from mockex.auth import API_KEY_METADATA
from mockex.participant import ticks_to_price

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
CALL_TIMEOUT_S = 15.0
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
DONE_ALREADY = (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION)
"""Answers to an admin operation that mean it needs no doing (a round started already, news
published, an account or symbol there)."""


class GatewayClient:
    def __init__(self, channel: grpc.aio.Channel, admin_key: str) -> None:
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.book = market_pb2_grpc.BookServiceStub(channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(channel)
        self.admin_metadata = ((API_KEY_METADATA, admin_key),)

    async def call_admin(
        self, method: Callable[..., Awaitable[T]], request, attempts: int = 8
    ) -> T:
        """An admin RPC, retried while the exchange is unavailable."""
        return await _retrying(
            lambda: method(request, metadata=self.admin_metadata, timeout=CALL_TIMEOUT_S),
            attempts,
        )

    async def place(
        self, api_key: str, intent: PlaceOrder, tick_size: float
    ) -> orders_pb2.PlaceOrderResponse:
        request = orders_pb2.PlaceOrderRequest(
            symbol=intent.symbol,
            side=int(intent.side),
            quantity=intent.quantity,
            price=ticks_to_price(intent.price, tick_size) if intent.price else 0.0,
            type=int(intent.type),
            time_in_force=int(intent.time_in_force),
            client_order_id=intent.client_order_id,
        )
        metadata = ((API_KEY_METADATA, api_key),)
        return await _retrying(
            lambda: self.orders.PlaceOrder(request, metadata=metadata, timeout=CALL_TIMEOUT_S), 3
        )

    async def cancel(self, api_key: str, intent: CancelOrder) -> None:
        request = orders_pb2.CancelOrderRequest(order_id=intent.order_id)
        metadata = ((API_KEY_METADATA, api_key),)
        await _retrying(
            lambda: self.orders.CancelOrder(request, metadata=metadata, timeout=CALL_TIMEOUT_S), 3
        )


async def _retrying(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    for attempt in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRIED or attempt == attempts - 1:
                raise
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.info("exchange unavailable (%s); again in %.1fs", error.details(), delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def is_done_already(error: grpc.aio.AioRpcError) -> bool:
    return error.code() in DONE_ALREADY
