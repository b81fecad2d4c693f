"""AdminService: the organizer's operations (the interceptor lets only admin keys in).

Each is one engine command; the engine's events say whether it was carried out, and a refusal
(a user id taken by a racing request, a symbol listed twice) comes back as its gRPC status.
"""

from __future__ import annotations

from exchange.internal.v1 import engine_pb2
from exchange.v1 import admin_pb2, admin_pb2_grpc
from gateway_svc.exchange import Exchange, new_order_id, refusal, refusal_error
from gateway_svc.validation import (
    add_symbol_command,
    adjust_cash_command,
    check_symbol_name,
    create_account_command,
)
from mockex import names, participant
from mockex.auth import hash_api_key, new_api_key


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _run(self, **command) -> engine_pb2.EngineBatch:
        """The command's batch; its refusal as an error. A command applied before (a resend
        after a reconnect) was this very request's: it is done."""
        batch = await self.exchange.run(
            engine_pb2.EngineCommand(command_id=f"admin-{new_order_id()}", **command)
        )
        refused = refusal(batch)
        if refused is not None:
            raise refusal_error(refused)
        return batch

    async def CreateUser(self, request, context):
        api_key = new_api_key()
        listed = {}
        for symbol in request.positions:
            spec = await self.exchange.symbol_spec(symbol)
            if spec is not None:
                listed[symbol] = spec
        create = create_account_command(request, hash_api_key(api_key), listed)
        await self._run(create_account=create)
        return admin_pb2.CreateUserResponse(user_id=create.user_id, api_key=api_key)

    async def AdjustCash(self, request, context):
        adjust = adjust_cash_command(request)
        batch = await self._run(adjust_cash=adjust)
        for event in batch.events:
            if event.WhichOneof("event") == "cash_adjusted":
                adjusted = event.cash_adjusted
                return admin_pb2.AdjustCashResponse(
                    user_id=adjusted.user_id,
                    cash=participant.units_to_cash(adjusted.cash_units),
                    starting_value=participant.units_to_cash(adjusted.starting_value_units),
                )
        # Applied before (a resend after a reconnect): the account as it stands.
        raw = await self.exchange.redis.hget(names.ACCOUNTS_KEY, adjust.user_id)
        account = engine_pb2.CachedAccount.FromString(raw or b"").account
        return admin_pb2.AdjustCashResponse(
            user_id=adjust.user_id, cash=account.cash, starting_value=account.starting_value
        )

    async def OpenMarket(self, request, context):
        await self._run(open_market=engine_pb2.OpenMarketCommand())
        return admin_pb2.OpenMarketResponse()

    async def CloseMarket(self, request, context):
        await self._run(close_market=engine_pb2.CloseMarketCommand())
        return admin_pb2.CloseMarketResponse()

    async def HaltTrading(self, request, context):
        if request.symbol:
            check_symbol_name(request.symbol)
        await self._run(halt_trading=engine_pb2.HaltTradingCommand(symbol=request.symbol))
        return admin_pb2.HaltTradingResponse()

    async def ResumeTrading(self, request, context):
        if request.symbol:
            check_symbol_name(request.symbol)
        await self._run(resume_trading=engine_pb2.ResumeTradingCommand(symbol=request.symbol))
        return admin_pb2.ResumeTradingResponse()

    async def AddSymbol(self, request, context):
        add = add_symbol_command(request)
        await self._run(add_symbol=add)
        tick_size = float(add.tick_size)
        return admin_pb2.AddSymbolResponse(
            symbol=add.symbol,
            tick_size=tick_size,
            lot_size=add.lot_size,
            reference_price=participant.ticks_to_price(add.reference_price_ticks, tick_size),
        )
