"""StoreService: checks the request, waits until the database holds the log as it stood when the
request arrived (store_svc.freshness), asks store_svc.queries, answers."""

from __future__ import annotations

import logging

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.internal.v1 import store_pb2, store_pb2_grpc
from store_svc import queries
from store_svc.db import DB_UNAVAILABLE
from store_svc.freshness import Freshness, LogBehind

log = logging.getLogger(__name__)

USER_ORDERS_LIMIT = (500, 5000)
"""(default, most) orders per ListUserOrders answer; a larger limit is capped."""
TRADES_LIMIT = (100, 1000)
CANDLES_LIMIT = (100, 1000)
NEWS_LIMIT = (50, 500)
ORDER_STATUS_FILTERS = ("", "open", "closed")
DATABASE_AWAY = "order history is unavailable right now (its database); retry shortly"


def _limit(requested: int, bounds: tuple[int, int]) -> int:
    default, most = bounds
    return min(requested or default, most)


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, engine: AsyncEngine, freshness: Freshness) -> None:
        self._engine = engine
        self._freshness = freshness

    async def GetStoredOrder(
        self, request: store_pb2.GetStoredOrderRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetStoredOrderResponse:
        if not request.order_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "order_id is required")
        await self._wait_fresh(context)
        try:
            order = await queries.stored_order(self._engine, request.order_id)
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        if order is None:
            return store_pb2.GetStoredOrderResponse(found=False)
        return store_pb2.GetStoredOrderResponse(found=True, order=order)

    async def ListUserOrders(
        self, request: store_pb2.ListUserOrdersRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListUserOrdersResponse:
        if not request.user_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id is required")
        if request.status not in ORDER_STATUS_FILTERS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"status must be open, closed or empty, got {request.status!r}",
            )
        await self._wait_fresh(context)
        try:
            found = await queries.user_orders(
                self._engine,
                request.user_id,
                request.status,
                _limit(request.limit, USER_ORDERS_LIMIT),
            )
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        return store_pb2.ListUserOrdersResponse(orders=found)

    async def ListSymbolTrades(
        self, request: store_pb2.ListSymbolTradesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListSymbolTradesResponse:
        await self._check_symbol(request.symbol, context)
        await self._wait_fresh(context)
        try:
            found = await queries.symbol_trades(
                self._engine, request.symbol, _limit(request.limit, TRADES_LIMIT)
            )
        except queries.UnknownSymbol:
            await self._abort_unknown_symbol(request.symbol, context)
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        return store_pb2.ListSymbolTradesResponse(trades=found)

    async def GetSymbolCandles(
        self, request: store_pb2.GetSymbolCandlesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetSymbolCandlesResponse:
        await self._check_symbol(request.symbol, context)
        interval_ns = queries.CANDLE_INTERVALS_NS.get(request.interval)
        if interval_ns is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"interval must be 1s or 1m, got {request.interval!r}",
            )
        await self._wait_fresh(context)
        try:
            found = await queries.symbol_candles(
                self._engine, request.symbol, interval_ns, _limit(request.limit, CANDLES_LIMIT)
            )
        except queries.UnknownSymbol:
            await self._abort_unknown_symbol(request.symbol, context)
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        return store_pb2.GetSymbolCandlesResponse(candles=found)

    async def ListNews(
        self, request: store_pb2.ListNewsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListNewsResponse:
        await self._wait_fresh(context)
        try:
            found = await queries.latest_news(self._engine, _limit(request.limit, NEWS_LIMIT))
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        return store_pb2.ListNewsResponse(news=found)

    async def GetReports(
        self, request: store_pb2.GetReportsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetReportsResponse:
        await self._wait_fresh(context)
        try:
            event, found, metric = await queries.event_reports(
                self._engine, request.user_id, request.round
            )
        except queries.UnknownRound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except DB_UNAVAILABLE as exc:
            await self._abort_database_away(exc, context)
        return store_pb2.GetReportsResponse(
            scenario=event.scenario, rounds=event.round_numbers(), reports=found, ranked_by=metric
        )

    async def _wait_fresh(self, context: grpc.aio.ServicerContext) -> None:
        """After the checks of the request (a bad one needs no wait), before the query."""
        try:
            await self._freshness.wait()
        except LogBehind as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    @staticmethod
    async def _check_symbol(symbol: str, context: grpc.aio.ServicerContext) -> None:
        if not symbol:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbol is required")

    @staticmethod
    async def _abort_unknown_symbol(symbol: str, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"symbol {symbol!r} is not listed")

    @staticmethod
    async def _abort_database_away(exc: Exception, context: grpc.aio.ServicerContext) -> None:
        log.warning("store query failed error=%s", getattr(exc, "orig", None) or exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_AWAY)
