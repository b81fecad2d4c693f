"""AccountService: the caller's account and the leaderboard, marked to market when read.

The mark of a symbol (the documented rule, docs/matching.md): its last trade price; before its
first trade, its reference price; without either, the position's own average price. P&L is
equity minus the starting value, so a participant who never traded has P&L 0 while prices stand
at the cost basis of the grants.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc

from exchange.internal.v1 import engine_pb2
from exchange.v1 import accounts_pb2, accounts_pb2_grpc, types_pb2
from gateway_svc.exchange import Exchange
from gateway_svc.interceptors import current_caller
from gateway_svc.validation import RequestError
from mockex import names, participant
from mockex.caches import check_complete


def marks(
    quotes: dict[str, types_pb2.Quote], symbols: dict[str, types_pb2.SymbolInfo]
) -> dict[str, float]:
    """The mark price of every symbol that has one (last trade, else reference price)."""
    result = {
        symbol: info.reference_price for symbol, info in symbols.items() if info.reference_price
    }
    result.update({symbol: quote.ltp for symbol, quote in quotes.items() if quote.ltp})
    return result


def mark_to_market(
    account: accounts_pb2.GetAccountResponse, mark_prices: dict[str, float]
) -> accounts_pb2.GetAccountResponse:
    """Fill in unrealized P&L, equity and P&L at the mark prices."""
    equity = account.cash
    for position in account.positions:
        mark = mark_prices.get(position.symbol) or position.avg_price
        position.unrealized_pnl = round((mark - position.avg_price) * position.quantity, 4)
        equity += mark * position.quantity
    account.equity = round(equity, 4)
    account.pnl = round(equity - account.starting_value, 4)
    return account


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _marks(self, symbols: Iterable[str]) -> dict[str, float]:
        ordered = sorted(set(symbols))
        if not ordered:
            return {}
        raw_quotes = await self.exchange.redis.mget([names.quote_key(s) for s in ordered])
        quotes = {
            symbol: types_pb2.Quote.FromString(raw)
            for symbol, raw in zip(ordered, raw_quotes, strict=True)
            if raw
        }
        return marks(quotes, await self.exchange.listed_symbols())

    async def GetAccount(self, request, context):
        caller = current_caller()
        raw = await self.exchange.redis.hget(names.ACCOUNTS_KEY, caller.user_id)
        if raw is None:
            await check_complete(self.exchange.redis)
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"user {caller.user_id!r} has no account")
        account = engine_pb2.CachedAccount.FromString(raw).account
        return mark_to_market(account, await self._marks(p.symbol for p in account.positions))

    async def GetLeaderboard(self, request, context):
        raw = await self.exchange.redis.hgetall(names.ACCOUNTS_KEY)
        if not raw:
            await check_complete(self.exchange.redis)
        cached = [engine_pb2.CachedAccount.FromString(value) for value in raw.values()]
        ranked = [entry.account for entry in cached if entry.ranked]
        mark_prices = await self._marks(
            position.symbol for account in ranked for position in account.positions
        )
        marked = sorted(
            (mark_to_market(account, mark_prices) for account in ranked),
            key=lambda account: (-account.pnl, account.user_id),
        )
        response = accounts_pb2.GetLeaderboardResponse(
            timestamp=participant.timestamp(time.time_ns())
        )
        for rank, account in enumerate(marked, start=1):
            response.entries.add(
                rank=rank,
                user_id=account.user_id,
                pnl=account.pnl,
                equity=account.equity,
                realized_pnl=account.realized_pnl,
                unrealized_pnl=round(sum(p.unrealized_pnl for p in account.positions), 4),
            )
        return response


class ExchangeHealthServicer(accounts_pb2_grpc.HealthServiceServicer):
    """GET /healthz: SERVING when the gateway can take orders (see EngineClient)."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def GetHealth(self, request, context):
        reason = self.exchange.engine.unavailable_reason()
        if not reason and not self.exchange.engine.views_ready:
            reason = "the exchange is rebuilding its data after a restart"
        if reason:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, reason)
        return accounts_pb2.GetHealthResponse(status="SERVING")
