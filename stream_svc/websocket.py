"""The WebSocket channels of SPEC section 4, beside the gRPC streams and fed by the same hub.

Every connection has one writer task, the only one that sends data (the reader only answers a
bad client message with an error), and the hub's bounded queue in front of it: a client that
does not read blocks its own writer only, its queue fills, and the hub cuts it off (4408).
Closing such a client cannot wait for it either: a close that does not get through in
CLOSE_TIMEOUT_SECONDS aborts the TCP connection.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from mockex.auth import ApiKeyAuthenticator
from mockex.caches import CachesIncomplete
from stream_svc.fanout import CloseReason, FanoutHub, Subscription
from stream_svc.feed import BookReader
from stream_svc.json_messages import JsonEncoder, error_json
from stream_svc.marketdata import MarketDataView, unknown_symbols

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest client message; a subscribe naming every symbol fits. Larger: closed with 1009."""
PING_INTERVAL_SECONDS = 20.0
"""A ping after this long, so a dead peer or a silent proxy is found out on idle connections."""
PING_TIMEOUT_SECONDS = 20.0
"""No pong within this long after a ping: the connection is closed (1011)."""
CLOSE_TIMEOUT_SECONDS = 10.0
"""The closing handshake's limit; then the TCP connection is dropped. A client cut off as slow
must read what the socket buffers still hold (megabytes) before it sees the close."""
SHUTDOWN_CLOSE_SECONDS = 2.0
"""On shutdown, what the closing handshakes get before every connection left is dropped."""
MAX_PENDING_OPS = 16
"""Subscribe/unsubscribe messages waiting for the writer; more and the server stops reading."""

API_KEY_HEADER = "X-API-Key"
"""Accepted beside `?apiKey=`, so clients that can set headers keep the key out of URLs."""


class CloseCode(enum.IntEnum):
    """Standard codes (RFC 6455), and ours in the range it leaves to applications (4000-4999),
    numbered after the HTTP statuses they mean."""

    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    NOT_FOUND = 4404
    SLOW_CONSUMER = 4408


HUB_CLOSES = {
    CloseReason.FELL_BEHIND: (CloseCode.SLOW_CONSUMER, "slow consumer"),
    CloseReason.FEED_LOST: (CloseCode.INTERNAL_ERROR, "event feed interrupted; reconnect"),
    CloseReason.SHUTTING_DOWN: (CloseCode.GOING_AWAY, "shutting down"),
}

OPS_WAITING = object()
"""Queued for a market-data writer behind a subscribe or unsubscribe, to wake it."""
Op = tuple[str, list[str]]
"""("subscribe" | "unsubscribe", symbols), checked."""
Query = dict[str, list[str]]
Channel = Callable[[ServerConnection, Query], Awaitable[None]]


class ClientMessageError(ValueError):
    """A client message we refuse; the text names the field and goes back to the client."""


def parse_op(text: str | bytes) -> Op:
    """`{"op": "subscribe" | "unsubscribe", "symbols": [...]}`, or ClientMessageError."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ClientMessageError(f"message: not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise ClientMessageError(
            'message: expected an object like {"op":"subscribe","symbols":["ACME"]}'
        )
    op = message.get("op")
    if op not in ("subscribe", "unsubscribe"):
        raise ClientMessageError(
            f'op: unknown operation {json.dumps(op)}; expected "subscribe" or "unsubscribe"'
        )
    symbols = message.get("symbols")
    if (
        not isinstance(symbols, list)
        or not symbols
        or not all(isinstance(symbol, str) and symbol for symbol in symbols)
    ):
        raise ClientMessageError(
            f"symbols: expected a non-empty list of symbol names, got {json.dumps(symbols)}"
        )
    return op, list(dict.fromkeys(symbols))


class WebSocketChannels:
    """Serves `/ws/marketdata`, `/ws/orderupdates` and `/ws/exchange_events` on one port."""

    def __init__(
        self,
        hub: FanoutHub,
        redis: Redis,
        authenticator: ApiKeyAuthenticator,
        books: BookReader,
    ) -> None:
        self._hub = hub
        self._redis = redis
        self._authenticator = authenticator
        self._books = books
        self._encoder = JsonEncoder()
        self._server: Server | None = None
        self._channels: dict[str, Channel] = {
            "/ws/marketdata": self._market_data,
            "/ws/orderupdates": self._order_updates,
            "/ws/exchange_events": self._exchange_events,
        }

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        assert self._server is not None, "WebSocketChannels is not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self, address: str, reuse_port: bool = False) -> None:
        """`reuse_port`: several stream_svc processes serve this port (SO_REUSEPORT)."""
        host, port = address.rsplit(":", 1)
        self._server = await serve(
            self._handle,
            host.strip("[]"),
            int(port),
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=PING_INTERVAL_SECONDS,
            ping_timeout=PING_TIMEOUT_SECONDS,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            reuse_port=reuse_port,
        )

    async def stop(self) -> None:
        """Every connection gets 1001, from its handler once the hub closed its subscription
        (SHUTTING_DOWN) or from the server, whichever comes first."""
        if self._server is None:
            return
        code, reason = HUB_CLOSES[CloseReason.SHUTTING_DOWN]
        self._server.close(code=code, reason=reason)
        try:
            async with asyncio.timeout(SHUTDOWN_CLOSE_SECONDS):
                await self._server.wait_closed()
        except TimeoutError:
            for connection in list(self._server.connections):
                connection.transport.abort()
            await self._server.wait_closed()

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None, "the handshake is done"
        url = urlsplit(websocket.request.path)
        channel = self._channels.get(url.path)
        if channel is None:
            await _close(websocket, CloseCode.NOT_FOUND, "not found")
            return
        await channel(websocket, parse_qs(url.query))

    async def _market_data(self, websocket: ServerConnection, query: Query) -> None:
        names = (name.strip() for value in query.get("symbols", ()) for name in value.split(","))
        symbols = list(dict.fromkeys(name for name in names if name))
        view = MarketDataView(self._hub, self._books)
        ops: asyncio.Queue[Op] = asyncio.Queue(MAX_PENDING_OPS)
        await self._serve(
            websocket,
            view.subscription,
            self._write_market(websocket, view, ops),
            self._read_ops(websocket, view.subscription, ops, symbols),
        )

    async def _order_updates(self, websocket: ServerConnection, query: Query) -> None:
        api_key = (query.get("apiKey") or [None])[-1] or websocket.request.headers.get(
            API_KEY_HEADER
        )
        try:
            caller = await self._authenticator.caller(api_key)
        except CachesIncomplete:
            await _close(websocket, CloseCode.TRY_AGAIN_LATER, "rebuilding; reconnect shortly")
            return
        except RedisError as exc:
            log.warning("websocket authentication unavailable error=%r", exc)
            await _close(websocket, CloseCode.INTERNAL_ERROR, "authentication unavailable")
            return
        if caller is None:
            log.info("websocket refused reason=unauthorized key_given=%s", bool(api_key))
            await _close(websocket, CloseCode.UNAUTHORIZED, "unauthorized")
            return
        subscription = self._hub.subscribe_orders(caller.user_id)
        await self._serve(
            websocket,
            subscription,
            self._write_all(websocket, subscription),
            _refuse_messages(websocket, "/ws/orderupdates"),
        )

    async def _exchange_events(self, websocket: ServerConnection, query: Query) -> None:
        subscription = self._hub.subscribe_exchange()
        await self._serve(
            websocket,
            subscription,
            self._write_all(websocket, subscription),
            _refuse_messages(websocket, "/ws/exchange_events"),
        )

    async def _read_ops(
        self,
        websocket: ServerConnection,
        subscription: Subscription[Any],
        ops: asyncio.Queue[Op],
        query_symbols: list[str],
    ) -> None:
        """The query's symbols first, then each client message, in order."""
        if query_symbols:
            op: Op = ("subscribe", query_symbols)
            await self._check_and_queue(websocket, subscription, ops, op)
        async for text in websocket:
            try:
                op = parse_op(text)
            except ClientMessageError as exc:
                await websocket.send(error_json(str(exc)))
                continue
            await self._check_and_queue(websocket, subscription, ops, op)

    async def _check_and_queue(
        self,
        websocket: ServerConnection,
        subscription: Subscription[Any],
        ops: asyncio.Queue[Op],
        op: Op,
    ) -> None:
        """Queue the op for the writer, or tell the client which symbols do not exist."""
        unknown = await unknown_symbols(self._hub, self._redis, op[1])
        if unknown:
            names = ", ".join(json.dumps(symbol) for symbol in unknown)
            await websocket.send(error_json(f"symbols: unknown symbol {names}"))
            return
        await ops.put(op)
        # A full queue needs no wake: its writer looks at the ops before its next entry.
        subscription.offer((OPS_WAITING,))

    async def _write_market(
        self, websocket: ServerConnection, view: MarketDataView, ops: asyncio.Queue[Op]
    ) -> None:
        """Applies ops and sends updates in one task: a snapshot is taken between two entries.

        One plain wait per entry (a fan-out's hot path): ops are applied before each entry, and
        `_check_and_queue` queues OPS_WAITING to wake a writer that waits for entries."""
        while True:
            entry = await view.subscription.get()
            while not ops.empty():
                action, symbols = ops.get_nowait()
                if action == "subscribe":
                    for snapshot in await view.subscribe(symbols):
                        await websocket.send(self._encoder.encode(snapshot))
                else:
                    view.unsubscribe(symbols)
            if entry[0] is OPS_WAITING:
                continue
            messages = await view.messages(entry)
            if messages:
                frames = b"".join(self._encoder.frame(message) for message in messages)
                await _send_frames(websocket, frames)

    async def _write_all(
        self, websocket: ServerConnection, subscription: Subscription[Any]
    ) -> None:
        while True:
            for response in await subscription.get():
                await websocket.send(self._encoder.encode(response))

    async def _serve(
        self,
        websocket: ServerConnection,
        subscription: Subscription[Any],
        write: Coroutine[Any, Any, None],
        read: Coroutine[Any, Any, None],
    ) -> None:
        """Run until the client leaves, the writer fails or the hub closes the subscription."""
        writer = asyncio.ensure_future(write)
        reader = asyncio.ensure_future(read)
        closed = asyncio.ensure_future(subscription.closed.wait())
        try:
            await asyncio.wait((writer, reader, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hub.unsubscribe(subscription)
            for task in (writer, reader, closed):
                task.cancel()
            await asyncio.gather(writer, reader, closed, return_exceptions=True)
        if subscription.close_reason is not None:
            code, reason = HUB_CLOSES[subscription.close_reason]
            await _close(websocket, code, reason)
            return
        for task in (writer, reader):
            error = None if task.cancelled() else task.exception()
            if error is None or isinstance(error, ConnectionClosed):
                continue
            if isinstance(error, CachesIncomplete):
                await _close(websocket, CloseCode.TRY_AGAIN_LATER, "rebuilding; reconnect shortly")
            elif isinstance(error, RedisError):
                log.warning("websocket closed reason=redis_error error=%r", error)
                await _close(websocket, CloseCode.INTERNAL_ERROR, "market data unavailable")
            else:
                log.error("websocket failed", exc_info=error)
                await _close(websocket, CloseCode.INTERNAL_ERROR, "internal error")
            return


async def _send_frames(websocket: ServerConnection, frames: bytes) -> None:
    """Text frames already serialised (JsonEncoder.frame), in one write: what `send` does per
    message (framing, a write and a drain each) was most of a fan-out's cost per connection.
    Whole frames only, so they never interleave with the library's own pings or close."""
    if websocket.protocol.state is not State.OPEN:
        raise websocket.protocol.close_exc
    websocket.transport.write(frames)
    await websocket.drain()  # the library's flow control, as `send` waits on it


async def _refuse_messages(websocket: ServerConnection, path: str) -> None:
    """Read (pings and the close need it) and answer that this channel takes no messages."""
    async for _ in websocket:
        await websocket.send(error_json(f"message: {path} takes no messages"))


async def _close(websocket: ServerConnection, code: int, reason: str) -> None:
    """Close with `code`; a client that does not read gets its TCP connection dropped instead."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code, reason)
    except TimeoutError:
        websocket.transport.abort()
