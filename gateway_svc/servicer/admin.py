"""AdminService: the organizer's operations (the interceptor lets only admin keys in).

Each is one engine command; the engine's events say whether it was carried out, and a refusal
(a user id taken by a racing request, a symbol listed twice) comes back as its gRPC status.
"""

from __future__ import annotations

import math
import re
import time

import grpc

from exchange.internal.v1 import engine_pb2, simulator_pb2, store_pb2
from exchange.v1 import admin_pb2, admin_pb2_grpc, competition_pb2, types_pb2
from gateway_svc.exchange import Exchange, new_order_id, refusal, refusal_error
from gateway_svc.servicer.accounts import event_pnl, mark_to_market
from gateway_svc.validation import (
    MAX_ROUND_SECONDS,
    RequestError,
    add_symbol_command,
    adjust_cash_command,
    changed_settings,
    check_symbol_name,
    check_user_id,
    create_account_command,
    invalid,
    publish_news_command,
    rules_of,
)
from mockex import names, participant
from mockex.auth import ADMIN_USER_ID, hash_api_key, new_api_key

ROLES = {engine_pb2.ACCOUNT_ROLE_BOT: admin_pb2.BOT}
SCENARIO_STATES = {
    competition_pb2.LOADED: engine_pb2.SCENARIO_STATE_LOADED,
    competition_pb2.RUNNING: engine_pb2.SCENARIO_STATE_RUNNING,
    competition_pb2.PAUSED: engine_pb2.SCENARIO_STATE_PAUSED,
    competition_pb2.FINISHED: engine_pb2.SCENARIO_STATE_STOPPED,
}
SCENARIO_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOAD_TIMEOUT_SECONDS = 60.0
"""Loading lists the symbols and opens every bot's account: a few hundred engine commands."""


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _run(self, **command) -> engine_pb2.EngineBatch:
        """The command's batch; its refusal as an error. A command applied before (a resend
        after a reconnect) was this very request's: it is done."""
        batch = await self.exchange.run(
            engine_pb2.EngineCommand(command_id=f"admin-{new_order_id()}", **command), urgent=True
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
        if not request.HasField("cash") and not request.positions:
            create.scenario_terms = True
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
            basket={component.symbol: component.shares for component in add.basket},
            conversion_fee=participant.units_to_cash(add.conversion_fee_units),
        )

    async def ListUsers(self, request, context):
        cached = await self.exchange.cached_accounts()
        marks = {}
        symbols = {p.symbol for entry in cached for p in entry.account.positions}
        if symbols:
            ordered = sorted(symbols)
            raw = await self.exchange.redis.mget([names.quote_key(s) for s in ordered])
            marks = {
                symbol: types_pb2.Quote.FromString(quote).mark
                for symbol, quote in zip(ordered, raw, strict=True)
                if quote
            }
        users = []
        for entry in sorted(cached, key=lambda entry: entry.account.user_id):
            account = mark_to_market(entry.account, marks)
            users.append(
                admin_pb2.UserSummary(
                    user_id=account.user_id,
                    role=ROLES.get(entry.role, admin_pb2.PARTICIPANT),
                    admin=not entry.ranked and entry.role != engine_pb2.ACCOUNT_ROLE_BOT,
                    disabled=entry.disabled,
                    cash=account.cash,
                    equity=account.equity,
                    pnl=event_pnl(entry),
                )
            )
        return admin_pb2.ListUsersResponse(users=users)

    async def RotateKey(self, request, context):
        self._check_target(request.user_id)
        api_key = new_api_key()
        await self._run(
            set_api_key=engine_pb2.SetApiKeyCommand(
                user_id=request.user_id, api_key_sha256=hash_api_key(api_key)
            )
        )
        return admin_pb2.RotateKeyResponse(user_id=request.user_id, api_key=api_key)

    async def RevokeKey(self, request, context):
        self._check_target(request.user_id)
        await self._run(set_api_key=engine_pb2.SetApiKeyCommand(user_id=request.user_id))
        return admin_pb2.RevokeKeyResponse()

    async def DisableUser(self, request, context):
        self._check_target(request.user_id)
        batch = await self._run(disable_user=engine_pb2.DisableUserCommand(user_id=request.user_id))
        cancelled = sum(1 for e in batch.events if e.WhichOneof("event") == "order_cancelled")
        return admin_pb2.DisableUserResponse(user_id=request.user_id, cancelled_orders=cancelled)

    async def EnableUser(self, request, context):
        self._check_target(request.user_id)
        await self._run(enable_user=engine_pb2.EnableUserCommand(user_id=request.user_id))
        return admin_pb2.EnableUserResponse()

    async def PostNews(self, request, context):
        news_id = request.news_id or f"news-{new_order_id()}"
        news = publish_news_command(request, news_id)
        for symbol in news.symbols:
            await self.exchange.require_listed(symbol)
        await self._run(publish_news=news)
        return admin_pb2.PostNewsResponse(news_id=news_id)

    async def GetRules(self, request, context):
        return admin_pb2.GetRulesResponse(rules=rules_of(await self.exchange.settings()))

    async def SetRules(self, request, context):
        settings = changed_settings(await self.exchange.settings(), request)
        configure = engine_pb2.ConfigureExchangeCommand()
        configure.settings.CopyFrom(settings)
        await self._run(configure_exchange=configure)
        return admin_pb2.SetRulesResponse(rules=rules_of(settings))

    async def StartRound(self, request, context):
        if request.round < 1:
            raise invalid(f"round must be 1 or more, got {request.round}")
        duration = request.duration_seconds
        if not 0 < duration <= 7 * 24 * 3600:
            raise invalid(f"durationSeconds must be positive (at most a week), got {duration}")
        ends_at = time.time_ns() + int(duration * 1e9)
        await self._run(
            start_round=engine_pb2.StartRoundCommand(
                round=request.round,
                ends_at_ns=ends_at,
                reset_accounts=request.reset_accounts,
                restart=request.restart,
            )
        )
        return admin_pb2.StartRoundResponse()

    async def EndRound(self, request, context):
        following = request.next_round_in_seconds
        if not math.isfinite(following) or not 0 <= following <= MAX_ROUND_SECONDS:
            raise invalid(
                f"nextRoundInSeconds must be 0 (none) to {MAX_ROUND_SECONDS:.0f}, got {following}"
            )
        next_starts_at = time.time_ns() + int(following * 1e9) if following else 0
        await self._run(
            end_round=engine_pb2.EndRoundCommand(
                round=request.round, next_round_starts_at_ns=next_starts_at
            )
        )
        return admin_pb2.EndRoundResponse()

    async def SetScenario(self, request, context):
        state = SCENARIO_STATES.get(request.state)
        if state is None:
            raise invalid("state must be LOADED, RUNNING, PAUSED or FINISHED")
        if state == engine_pb2.SCENARIO_STATE_LOADED and not SCENARIO_NAME.fullmatch(request.name):
            raise invalid(
                f"name {request.name!r} must be a scenario's name: letters, digits, '-' or '_'"
            )
        command = engine_pb2.SetScenarioCommand(
            state=state,
            name=request.name,
            seed=request.seed,
            digest=request.digest,
            rounds=request.rounds,
        )
        if state == engine_pb2.SCENARIO_STATE_LOADED:
            terms = admin_pb2.CreateUserRequest(
                user_id="scenario",
                cash=request.participant_cash,
                positions=request.participant_positions,
            )
            listed = {}
            for symbol in request.participant_positions:
                spec = await self.exchange.symbol_spec(symbol)
                if spec is not None:
                    listed[symbol] = spec
            try:
                account = create_account_command(terms, "", listed)
            except RequestError as error:
                raise invalid(f"participant terms: {error.message}") from None
            command.participant_cash_units = account.cash_units
            command.participant_grants.extend(account.grants)
        await self._run(set_scenario=command)
        return admin_pb2.SetScenarioResponse()

    async def LoadScenario(self, request, context):
        if not SCENARIO_NAME.fullmatch(request.name):
            raise invalid(
                f"name {request.name!r} must be a scenario's name: letters, digits, '-' or '_' "
                "(GET /admin/scenarios lists them)"
            )
        answer = await self._simulator(
            self.exchange.simulator.LoadScenario(
                simulator_pb2.LoadScenarioRequest(
                    name=request.name, seed=request.seed, paused=request.paused
                ),
                timeout=LOAD_TIMEOUT_SECONDS,
            )
        )
        return answer.loaded

    async def ListScenarios(self, request, context):
        answer = await self._simulator(
            self.exchange.simulator.ListScenarios(
                simulator_pb2.ListScenariosRequest(),
                timeout=self.exchange.config.store_timeout_seconds,
            )
        )
        return admin_pb2.ListScenariosResponse(scenarios=answer.scenarios)

    async def GetSimulatorStatus(self, request, context):
        answer = await self._simulator(
            self.exchange.simulator.GetSimulatorStatus(
                simulator_pb2.GetSimulatorStatusRequest(),
                timeout=self.exchange.config.store_timeout_seconds,
            )
        )
        return answer.status

    async def GetResults(self, request, context):
        answer = await self.exchange.store.GetReports(
            store_pb2.GetReportsRequest(), timeout=self.exchange.config.store_timeout_seconds
        )
        return admin_pb2.GetResultsResponse(
            scenario=answer.scenario,
            rounds=answer.rounds,
            reports=answer.reports,
            timestamp=participant.timestamp(time.time_ns()),
            ranked_by=answer.ranked_by,
        )

    @staticmethod
    async def _simulator(call):
        """The simulator's answer; its own errors (a scenario file's mistake) as they are, and
        UNAVAILABLE in the organizer's words when it is not running."""
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise RequestError(
                    grpc.StatusCode.UNAVAILABLE,
                    "the simulator (data_svc) does not answer; it loads scenarios: "
                    f"{error.details()}",
                ) from None
            raise RequestError(error.code(), error.details() or "simulator error") from None

    @staticmethod
    def _check_target(user_id: str) -> None:
        check_user_id(user_id)
        if user_id == ADMIN_USER_ID:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "userId admin is the key from MOCKEX_ADMIN_KEY: change it in the environment",
            )
