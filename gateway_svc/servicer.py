"""The public gRPC services: thin translations between the wire and the exchange.

Orders go to the engine through EngineClient; books, quotes, accounts and orders just placed are
read from the Redis caches the engine keeps; history comes from store_svc; live streams are
forwarded to stream_svc so that port 50051 offers every service of the contract.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator

import grpc
from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2, store_pb2, store_pb2_grpc
from exchange.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    market_pb2,
    market_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    streams_pb2,
    streams_pb2_grpc,
    types_pb2,
)
from gateway_svc.config import GatewayConfig
from gateway_svc.engine_client import EngineClient, EngineTimeout
from gateway_svc.rate_limit import TokenBucketLimiter
from gateway_svc.validation import (
    RequestError,
    SymbolSpec,
    add_symbol_command,
    check_list_filter,
    check_order_id,
    check_symbol_name,
    create_account_command,
    invalid,
    place_order_command,
)
from mockex import convert, names
from mockex.auth import (
    ApiKeyAuthenticator,
    Caller,
    api_key_from_metadata,
    hash_api_key,
    new_api_key,
)

log = logging.getLogger("gateway_svc")



def new_order_id() -> str:
    """Roughly time-ordered, unique across gateway instances."""
    return f"{time.time_ns():x}{secrets.token_hex(3)}"


def order_from_batch(
    batch: engine_pb2.EngineBatch,
    order_id: str,
    tick_size: float,
    previous_fills: list[types_pb2.Fill] | None = None,
) -> types_pb2.Order | None:
    """The order as the engine left it after this batch, with every fill."""
    state = None
    fills = list(previous_fills or ())
    for event in batch.events:
        kind = event.WhichOneof("event")
        if kind not in convert.ORDER_EVENT_KINDS:
            continue
        event_state = getattr(event, kind).order
        if event_state.order_id != order_id:
            continue
        state = event_state
        if kind == "order_filled":
            fills.append(convert.public_fill(event.order_filled, event.timestamp_ns, tick_size))
    return None if state is None else convert.public_order(state, tick_size, fills)


class Exchange:
    """What every servicer shares: clients, authentication and the symbol specifications."""

    def __init__(
        self,
        config: GatewayConfig,
        redis: Redis,
        engine: EngineClient,
        store: store_pb2_grpc.StoreServiceStub,
    ) -> None:
        self.config = config
        self.redis = redis
        self.engine = engine
        self.store = store
        self.authenticator = ApiKeyAuthenticator(redis, config.admin_key)
        self.rate_limiter = TokenBucketLimiter(
            config.rate_limit_per_second, config.rate_limit_burst
        )
        self._symbols: dict[str, SymbolSpec] = {}

    async def caller(self, context: grpc.aio.ServicerContext) -> Caller:
        """The authenticated caller, within its rate limit (admins are not limited)."""
        caller = await self.authenticator.caller(
            api_key_from_metadata(context.invocation_metadata())
        )
        if caller is None:
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key (x-api-key)"
            )
        if not caller.admin:
            wait = self.rate_limiter.take(caller.user_id, time.monotonic())
            if wait:
                retry_after = max(1, math.ceil(wait))
                context.set_trailing_metadata((("retry-after", str(retry_after)),))
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit of {self.rate_limiter.rate:g} requests/s for this API key "
                    f"exceeded; retry after {retry_after}s",
                )
        return caller

    async def admin(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self.caller(context)
        if not caller.admin:
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "this call needs an admin key")
        return caller

    async def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        spec = self._symbols.get(symbol)
        if spec is None:
            raw = await self.redis.hget(names.SYMBOLS_KEY, symbol)
            if raw is None:
                return None
            spec = self._symbols[symbol] = SymbolSpec.from_info(
                types_pb2.SymbolInfo.FromString(raw)
            )
        return spec

    async def require_listed(self, symbol: str) -> SymbolSpec:
        """The symbol's specification; NOT_FOUND when the exchange does not list it."""
        check_symbol_name(symbol)
        spec = await self.symbol_spec(symbol)
        if spec is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"symbol {symbol!r} is not listed")
        return spec

    async def listed_symbols(self) -> dict[str, types_pb2.SymbolInfo]:
        raw = await self.redis.hgetall(names.SYMBOLS_KEY)
        return {key.decode(): types_pb2.SymbolInfo.FromString(value) for key, value in raw.items()}

    async def run(
        self, command: engine_pb2.EngineCommand, timeout_message: str = ""
    ) -> engine_pb2.EngineBatch:
        """The engine's batch for `command`; DEADLINE_EXCEEDED with `timeout_message` (or one
        naming the command) when it does not answer in time."""
        try:
            return await self.engine.execute(command, self.config.engine_timeout_seconds)
        except EngineTimeout as exc:
            raise RequestError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                timeout_message
                or f"the engine did not answer in {self.config.engine_timeout_seconds:g}s for "
                f"command {command.command_id}; it will still be processed",
            ) from exc

    async def find_order(self, order_id: str) -> types_pb2.Order | None:
        raw = await self.redis.get(names.order_key(order_id))
        if raw is not None:
            return types_pb2.Order.FromString(raw)
        answer = await self.store.GetStoredOrder(
            store_pb2.GetStoredOrderRequest(order_id=order_id),
            timeout=self.config.store_timeout_seconds,
        )
        return answer.order if answer.found else None

    async def visible_order(self, order_id: str, caller: Caller) -> types_pb2.Order:
        """The order if the caller may see it; NOT_FOUND otherwise (never reveal others')."""
        check_order_id(order_id)
        order = await self.find_order(order_id)
        if order is None or (order.user_id != caller.user_id and not caller.admin):
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"order {order_id!r} not found")
        return order


PASSED_THROUGH = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
)


def _handles_errors(method):
    """Turn RequestError, and errors of the services we call, into the right gRPC status."""

    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in PASSED_THROUGH:
                await context.abort(exc.code(), exc.details() or exc.code().name)
            log.warning(
                "upstream call failed method=%s code=%s details=%s",
                method.__name__,
                exc.code().name,
                exc.details(),
            )
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"a backing service is unavailable ({exc.code().name}); retry shortly",
            )

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    @_handles_errors
    async def PlaceOrder(self, request, context):
        exchange = self.exchange
        caller = await exchange.caller(context)
        spec = await exchange.symbol_spec(request.symbol) if request.symbol else None
        order_id = new_order_id()
        place = place_order_command(request, caller.user_id, spec, order_id)
        if place.client_order_id:
            existing = await self._claim_client_order_id(caller, place.client_order_id, order_id)
            if existing is not None:
                return orders_pb2.PlaceOrderResponse(order=existing)
        if await exchange.engine.queue_length() > exchange.config.max_commands_in_stream:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE, "the engine is overloaded; retry shortly"
            )
        command = engine_pb2.EngineCommand(command_id=order_id, place_order=place)
        batch = await exchange.run(
            command,
            f"orderId {order_id}: the engine did not answer in time; the order is queued and "
            "its final state will show in GET /order/status/{orderId}",
        )
        order = order_from_batch(batch, order_id, float(spec.tick_size))
        if order is None:
            raise RequestError(grpc.StatusCode.INTERNAL, f"no result for order {order_id}")
        return orders_pb2.PlaceOrderResponse(order=order)

    async def _claim_client_order_id(
        self, caller: Caller, client_order_id: str, order_id: str
    ) -> types_pb2.Order | None:
        """Reserve the user's clientOrderId for this order, or return the order that has it."""
        key = names.client_order_key(caller.user_id, client_order_id)
        redis = self.exchange.redis
        if await redis.set(key, order_id, nx=True, ex=names.ORDER_TTL_SECONDS):
            return None
        first_id = (await redis.get(key) or b"").decode()
        deadline = time.monotonic() + self.exchange.config.engine_timeout_seconds
        while time.monotonic() < deadline:
            order = await self.exchange.find_order(first_id)
            if order is not None:
                return order
            await asyncio.sleep(0.02)
        raise RequestError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"orderId {first_id}: clientOrderId {client_order_id!r} is still being processed",
        )

    @_handles_errors
    async def GetOrder(self, request, context):
        caller = await self.exchange.caller(context)
        order = await self.exchange.visible_order(request.order_id, caller)
        return orders_pb2.GetOrderResponse(order=order)

    @_handles_errors
    async def CancelOrder(self, request, context):
        exchange = self.exchange
        caller = await exchange.caller(context)
        order = await exchange.visible_order(request.order_id, caller)
        if order.status in convert.FINISHED:
            raise _finished(order)
        command = engine_pb2.EngineCommand(
            command_id=f"cancel-{new_order_id()}",
            cancel_order=engine_pb2.CancelOrderCommand(
                order_id=order.order_id, user_id=caller.user_id, is_admin=caller.admin
            ),
        )
        batch = await exchange.run(command)
        spec = await exchange.symbol_spec(order.symbol)
        cancelled = order_from_batch(batch, order.order_id, float(spec.tick_size), order.fills)
        if cancelled is not None:
            return orders_pb2.CancelOrderResponse(order=cancelled)
        latest = await exchange.find_order(order.order_id)
        raise _finished(latest or order)

    @_handles_errors
    async def ListOrders(self, request, context):
        caller = await self.exchange.caller(context)
        check_list_filter(request.status)
        answer = await self.exchange.store.ListUserOrders(
            store_pb2.ListUserOrdersRequest(user_id=caller.user_id, status=request.status),
            timeout=self.exchange.config.store_timeout_seconds,
        )
        return orders_pb2.ListOrdersResponse(orders=answer.orders)


def _finished(order: types_pb2.Order) -> RequestError:
    status = types_pb2.OrderStatus.Name(order.status)
    return RequestError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"order {order.order_id} is already {status}; only open orders can be cancelled",
    )


class BookServicer(market_pb2_grpc.BookServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    @_handles_errors
    async def ListSymbols(self, request, context):
        symbols = await self.exchange.listed_symbols()
        return market_pb2.ListSymbolsResponse(symbols=[symbols[s] for s in sorted(symbols)])

    @_handles_errors
    async def GetQuote(self, request, context):
        await self.exchange.require_listed(request.symbol)
        raw = await self.exchange.redis.get(names.quote_key(request.symbol))
        quote = types_pb2.Quote.FromString(raw) if raw else types_pb2.Quote(symbol=request.symbol)
        return market_pb2.GetQuoteResponse(quote=quote)

    @_handles_errors
    async def GetOrderBook(self, request, context):
        await self.exchange.require_listed(request.symbol)
        raw = await self.exchange.redis.get(names.book_key(request.symbol))
        book = (
            types_pb2.OrderBook.FromString(raw)
            if raw
            else types_pb2.OrderBook(symbol=request.symbol)
        )
        if request.depth:
            del book.bids[request.depth :]
            del book.asks[request.depth :]
        return market_pb2.GetOrderBookResponse(book=book)


class TradeServicer(market_pb2_grpc.TradeServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    @_handles_errors
    async def ListTrades(self, request, context):
        await self.exchange.require_listed(request.symbol)
        answer = await self._from_store(
            self.exchange.store.ListSymbolTrades,
            store_pb2.ListSymbolTradesRequest(symbol=request.symbol, limit=request.limit or 100),
            store_pb2.ListSymbolTradesResponse(),
        )
        return market_pb2.ListTradesResponse(symbol=request.symbol, trades=answer.trades)

    @_handles_errors
    async def GetCandles(self, request, context):
        await self.exchange.require_listed(request.symbol)
        interval = request.interval or "1m"
        if interval not in ("1s", "1m"):
            raise invalid(f"interval {interval!r} must be '1s' or '1m'")
        answer = await self._from_store(
            self.exchange.store.GetSymbolCandles,
            store_pb2.GetSymbolCandlesRequest(
                symbol=request.symbol, interval=interval, limit=request.limit or 100
            ),
            store_pb2.GetSymbolCandlesResponse(),
        )
        return market_pb2.GetCandlesResponse(
            symbol=request.symbol, interval=interval, candles=answer.candles
        )

    async def _from_store(self, call, request, empty):
        """The store's answer; `empty` while the store has not yet read the symbol's listing
        from the log (it lags the engine by a few milliseconds)."""
        try:
            return await call(request, timeout=self.exchange.config.store_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return empty
            raise


def mark_to_market(
    account: accounts_pb2.GetAccountResponse, quotes: dict[str, types_pb2.Quote]
) -> accounts_pb2.GetAccountResponse:
    """Fill in unrealized P&L and equity from the last traded prices (avg price if none)."""
    equity = account.cash
    for position in account.positions:
        quote = quotes.get(position.symbol)
        mark = quote.ltp if quote and quote.ltp else position.avg_price
        position.unrealized_pnl = round((mark - position.avg_price) * position.quantity, 4)
        equity += mark * position.quantity
    account.equity = round(equity, 4)
    return account


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _quotes(self, symbols: set[str]) -> dict[str, types_pb2.Quote]:
        if not symbols:
            return {}
        ordered = sorted(symbols)
        raw = await self.exchange.redis.mget([names.quote_key(symbol) for symbol in ordered])
        return {
            symbol: types_pb2.Quote.FromString(value)
            for symbol, value in zip(ordered, raw, strict=True)
            if value
        }

    @_handles_errors
    async def GetAccount(self, request, context):
        caller = await self.exchange.caller(context)
        raw = await self.exchange.redis.hget(names.ACCOUNTS_KEY, caller.user_id)
        if raw is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"user {caller.user_id!r} has no account")
        account = accounts_pb2.GetAccountResponse.FromString(raw)
        quotes = await self._quotes({position.symbol for position in account.positions})
        return mark_to_market(account, quotes)

    @_handles_errors
    async def GetLeaderboard(self, request, context):
        raw = await self.exchange.redis.hgetall(names.ACCOUNTS_KEY)
        accounts = [accounts_pb2.GetAccountResponse.FromString(value) for value in raw.values()]
        quotes = await self._quotes(
            {position.symbol for account in accounts for position in account.positions}
        )
        marked = sorted(
            (mark_to_market(account, quotes) for account in accounts),
            key=lambda account: (-account.equity, account.user_id),
        )
        response = accounts_pb2.GetLeaderboardResponse(timestamp=convert.timestamp(time.time_ns()))
        for rank, account in enumerate(marked, start=1):
            response.entries.add(
                rank=rank,
                user_id=account.user_id,
                equity=account.equity,
                realized_pnl=account.realized_pnl,
                unrealized_pnl=round(sum(p.unrealized_pnl for p in account.positions), 4),
            )
        return response


class ExchangeHealthServicer(accounts_pb2_grpc.HealthServiceServicer):
    """SERVING when Redis answers and the engine has reported alive within a few seconds."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    @_handles_errors
    async def GetHealth(self, request, context):
        try:
            alive = await self.exchange.redis.exists(names.ENGINE_ALIVE_KEY)
        except Exception as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"redis unreachable: {exc}") from exc
        if not alive:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "the matching engine is not running")
        return accounts_pb2.GetHealthResponse(status="SERVING")


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _run(self, **command) -> engine_pb2.EngineBatch:
        return await self.exchange.run(
            engine_pb2.EngineCommand(command_id=f"admin-{new_order_id()}", **command)
        )

    @_handles_errors
    async def CreateUser(self, request, context):
        exchange = self.exchange
        await exchange.admin(context)
        api_key = new_api_key()
        listed = set(await exchange.listed_symbols())
        create = create_account_command(request, hash_api_key(api_key), listed)
        if await exchange.redis.hexists(names.ACCOUNTS_KEY, create.user_id):
            raise RequestError(
                grpc.StatusCode.ALREADY_EXISTS, f"userId {create.user_id!r} already exists"
            )
        await self._run(create_account=create)
        return admin_pb2.CreateUserResponse(user_id=create.user_id, api_key=api_key)

    @_handles_errors
    async def OpenMarket(self, request, context):
        await self.exchange.admin(context)
        await self._run(open_market=engine_pb2.OpenMarketCommand())
        return admin_pb2.OpenMarketResponse()

    @_handles_errors
    async def CloseMarket(self, request, context):
        await self.exchange.admin(context)
        await self._run(close_market=engine_pb2.CloseMarketCommand())
        return admin_pb2.CloseMarketResponse()

    async def _check_known(self, symbol: str) -> None:
        if symbol:
            check_symbol_name(symbol)
            if await self.exchange.symbol_spec(symbol) is None:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"symbol {symbol!r} is not listed")

    @_handles_errors
    async def HaltTrading(self, request, context):
        await self.exchange.admin(context)
        await self._check_known(request.symbol)
        await self._run(halt_trading=engine_pb2.HaltTradingCommand(symbol=request.symbol))
        return admin_pb2.HaltTradingResponse()

    @_handles_errors
    async def ResumeTrading(self, request, context):
        await self.exchange.admin(context)
        await self._check_known(request.symbol)
        await self._run(resume_trading=engine_pb2.ResumeTradingCommand(symbol=request.symbol))
        return admin_pb2.ResumeTradingResponse()

    @_handles_errors
    async def AddSymbol(self, request, context):
        await self.exchange.admin(context)
        add = add_symbol_command(request)
        if await self.exchange.symbol_spec(add.symbol) is not None:
            raise RequestError(
                grpc.StatusCode.ALREADY_EXISTS, f"symbol {add.symbol!r} is already listed"
            )
        await self._run(add_symbol=add)
        return admin_pb2.AddSymbolResponse(
            symbol=add.symbol, tick_size=float(add.tick_size), lot_size=add.lot_size
        )


class StreamProxy(streams_pb2_grpc.StreamServiceServicer):
    """Forwards the live streams to stream_svc, keeping the caller's API key."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = streams_pb2_grpc.StreamServiceStub(channel)

    async def _forward(self, call, context) -> AsyncIterator:
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "stream ended")

    def _metadata(self, context) -> tuple[tuple[str, str], ...]:
        api_key = api_key_from_metadata(context.invocation_metadata())
        return (("x-api-key", api_key),) if api_key else ()

    async def StreamMarketData(self, request, context):
        call = self.stub.StreamMarketData(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message

    async def StreamOrderUpdates(self, request, context):
        call = self.stub.StreamOrderUpdates(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message

    async def StreamExchangeEvents(self, request, context):
        call = self.stub.StreamExchangeEvents(request, metadata=self._metadata(context))
        async for message in self._forward(call, context):
            yield message


SERVICE_NAMES = [
    orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
    market_pb2.DESCRIPTOR.services_by_name["BookService"].full_name,
    market_pb2.DESCRIPTOR.services_by_name["TradeService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    streams_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name,
]
