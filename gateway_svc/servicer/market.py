"""BookService and TradeService: symbols, quotes and books from the engine's caches; trades and
candles from the store."""

from __future__ import annotations

from exchange.internal.v1 import store_pb2
from exchange.v1 import market_pb2, market_pb2_grpc, types_pb2
from gateway_svc.exchange import Exchange
from gateway_svc.validation import invalid
from mockex import names
from mockex.caches import check_complete

CANDLE_INTERVALS = ("1s", "1m")


class BookServicer(market_pb2_grpc.BookServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def ListSymbols(self, request, context):
        symbols = await self.exchange.listed_symbols()
        return market_pb2.ListSymbolsResponse(symbols=[symbols[s] for s in sorted(symbols)])

    async def GetQuote(self, request, context):
        quote = types_pb2.Quote.FromString(await self._cached(request.symbol, names.quote_key))
        quote.symbol = request.symbol
        return market_pb2.GetQuoteResponse(quote=quote)

    async def GetOrderBook(self, request, context):
        book = types_pb2.OrderBook.FromString(await self._cached(request.symbol, names.book_key))
        book.symbol = request.symbol
        if request.depth:
            del book.bids[request.depth :]
            del book.asks[request.depth :]
        return market_pb2.GetOrderBookResponse(book=book)

    async def _cached(self, symbol: str, key) -> bytes:
        """A listed symbol's cached book or quote; every listed symbol has both once the engine
        has written its caches, so a missing one means they are being rebuilt."""
        exchange = self.exchange
        await exchange.require_listed(symbol)
        raw = await exchange.redis.get(key(symbol))
        if raw is None:
            await check_complete(exchange.redis)
        return raw or b""


class TradeServicer(market_pb2_grpc.TradeServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def ListTrades(self, request, context):
        exchange = self.exchange
        await exchange.require_listed(request.symbol)
        answer = await exchange.store.ListSymbolTrades(
            store_pb2.ListSymbolTradesRequest(symbol=request.symbol, limit=request.limit or 100),
            timeout=exchange.config.store_timeout_seconds,
        )
        return market_pb2.ListTradesResponse(symbol=request.symbol, trades=answer.trades)

    async def GetCandles(self, request, context):
        exchange = self.exchange
        await exchange.require_listed(request.symbol)
        interval = request.interval or "1m"
        if interval not in CANDLE_INTERVALS:
            raise invalid(f"interval {interval!r} must be '1s' or '1m'")
        answer = await exchange.store.GetSymbolCandles(
            store_pb2.GetSymbolCandlesRequest(
                symbol=request.symbol, interval=interval, limit=request.limit or 100
            ),
            timeout=exchange.config.store_timeout_seconds,
        )
        return market_pb2.GetCandlesResponse(
            symbol=request.symbol, interval=interval, candles=answer.candles
        )
