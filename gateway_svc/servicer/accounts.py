"""AccountService: the caller's account and the leaderboard, marked to market when read.

The mark of each symbol is the engine's (each cached quote carries it; the rule is in
engine_svc/scoring.py and docs/matching.md): the mid of a narrow two-sided book, else the last
trade clamped into the book, else the reference price. A position of a symbol without a mark is
worth its own average price. P&L is equity minus the starting value, so a participant who never
traded has P&L 0 while prices stand at the cost basis of the grants; on the leaderboard it is
the P&L over the whole event (every round so far), and it ranks by it unless the rules' ranking
names another metric (mockex/ranking.py, the reports' order too).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc

from exchange.internal.v1 import engine_pb2, store_pb2
from exchange.v1 import accounts_pb2, accounts_pb2_grpc, types_pb2
from gateway_svc.exchange import Exchange
from gateway_svc.interceptors import current_caller
from gateway_svc.validation import RequestError
from mockex import names, participant, ranking
from mockex.caches import check_complete


def mark_to_market(
    account: accounts_pb2.GetAccountResponse, marks: dict[str, float]
) -> accounts_pb2.GetAccountResponse:
    """Fill in unrealized P&L, equity and P&L at the mark prices."""
    equity = account.cash
    for position in account.positions:
        mark = marks.get(position.symbol) or position.avg_price
        position.unrealized_pnl = round((mark - position.avg_price) * position.quantity, 4)
        equity += mark * position.quantity
    account.equity = round(equity, 4)
    account.pnl = round(equity - account.starting_value, 4)
    return account


def event_pnl(cached: engine_pb2.CachedAccount) -> float:
    """The P&L over the event: finished rounds, plus the open round so far (the account's own
    P&L before the first round)."""
    banked = participant.units_to_cash(cached.banked_units)
    if cached.round_open or not cached.finished_round_pnl_units:
        return round(
            banked + cached.account.pnl - participant.units_to_cash(cached.round_base_units), 4
        )
    return banked


def round_pnls(cached: engine_pb2.CachedAccount) -> list[float]:
    finished = [participant.units_to_cash(pnl) for pnl in cached.finished_round_pnl_units]
    if cached.round_open:
        current = cached.account.pnl - participant.units_to_cash(cached.round_base_units)
        finished.append(round(current, 4))
    return finished


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _marks(self, symbols: Iterable[str]) -> dict[str, float]:
        ordered = sorted(set(symbols))
        if not ordered:
            return {}
        raw_quotes = await self.exchange.redis.mget([names.quote_key(s) for s in ordered])
        return {
            symbol: types_pb2.Quote.FromString(raw).mark
            for symbol, raw in zip(ordered, raw_quotes, strict=True)
            if raw
        }

    async def GetAccount(self, request, context):
        caller = current_caller()
        raw = await self.exchange.redis.hget(names.ACCOUNTS_KEY, caller.user_id)
        if raw is None:
            await check_complete(self.exchange.redis)
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"user {caller.user_id!r} has no account")
        account = engine_pb2.CachedAccount.FromString(raw).account
        return mark_to_market(account, await self._marks(p.symbol for p in account.positions))

    async def GetLeaderboard(self, request, context):
        cached = await self.exchange.cached_accounts()
        ranked = [entry for entry in cached if entry.ranked]
        marks = await self._marks(
            position.symbol for entry in ranked for position in entry.account.positions
        )
        for entry in ranked:
            mark_to_market(entry.account, marks)
        metric = ranking.metric_in_force((await self.exchange.settings()).ranking)
        ranked.sort(
            key=lambda entry: ranking.rank_key(
                metric, entry.account.user_id, event_pnl(entry), entry.sharpe
            )
        )
        response = accounts_pb2.GetLeaderboardResponse(
            timestamp=participant.timestamp(time.time_ns()), ranked_by=metric
        )
        for rank, entry in enumerate(ranked, start=1):
            account = entry.account
            response.entries.add(
                rank=rank,
                user_id=account.user_id,
                pnl=event_pnl(entry),
                equity=account.equity,
                realized_pnl=account.realized_pnl,
                unrealized_pnl=round(sum(p.unrealized_pnl for p in account.positions), 4),
                max_drawdown=participant.units_to_cash(entry.max_drawdown_units),
                sharpe=entry.sharpe,
                round_pnl=round_pnls(entry),
                fees_paid=account.fees_paid,
            )
        return response

    async def GetReport(self, request, context):
        """From the store, which builds reports from the log (store_svc/reports.py)."""
        caller = current_caller()
        answer = await self.exchange.store.GetReports(
            store_pb2.GetReportsRequest(user_id=caller.user_id, round=request.round),
            timeout=self.exchange.config.store_timeout_seconds,
        )
        if not answer.reports:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"user {caller.user_id!r} has no report: reports are for participants "
                "(admins and bots have none)",
            )
        return accounts_pb2.GetReportResponse(report=answer.reports[0])


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
