"""A minimal asyncio HTTP/1.1 client for the benchmarks' REST load: keep-alive connections only.

The load generator needs many requests in flight at a fixed send rate with as little CPU per
request as possible, so it writes each request as one prepared byte string over asyncio streams
and reads only what HTTP/1.1 framing needs (status line, Content-Length or chunked body). One
request per connection at a time (no pipelining): a pool keeps idle connections and opens new
ones while every connection is busy, up to a bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ResponseHead:
    status: int
    content_length: int | None
    """None when the body is chunked (or, without either header, empty)."""
    chunked: bool
    keep_alive: bool


def parse_head(head: bytes) -> ResponseHead:
    """The status line and the framing headers of an HTTP/1.1 response head (up to and with
    the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep_alive = "close" not in value
    return ResponseHead(status, None if chunked else length, chunked, keep_alive)


def request_bytes(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request with a body, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_code(body: bytes) -> tuple[int | None, str]:
    """(gRPC code, message) of an error body shaped {code, message, details} (SPEC.md 3);
    (None, text) when the body is not that."""
    try:
        parsed = json.loads(body)
        return int(parsed["code"]), str(parsed.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None, body[:160].decode("utf-8", "replace")


async def read_response(reader: asyncio.StreamReader) -> tuple[ResponseHead, bytes]:
    head = parse_head(await reader.readuntil(b"\r\n\r\n"))
    if head.chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        return head, b"".join(parts)
    if head.content_length:
        return head, await reader.readexactly(head.content_length)
    return head, b""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one host: a request takes an idle connection, or opens
    one while fewer than `max_connections` exist, else waits for one to come back."""

    def __init__(self, host: str, port: int, max_connections: int = 1024) -> None:
        self.host, self.port = host, port
        self.max_connections = max_connections
        self.idle: collections.deque = collections.deque()
        self.open = 0
        self.opened = 0
        """Connections opened in all (a figure for the report: keep-alive held if it stays low)."""
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        """Requests waiting for a connection while all `max_connections` are busy."""

    async def warm(self, count: int) -> None:
        """Open `count` connections ahead of the load, so the first step pays no connects."""
        for _ in range(count):
            self.idle.append(await self._connect())

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.open += 1
        self.opened += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.open -= 1
            raise

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            if self.idle:
                return self.idle.pop()
            if self.open < self.max_connections:
                return await self._connect()
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            try:
                connection = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(waiter.result())  # handed over just as it gave up
                raise
            if connection is not None:
                return connection

    def _give_back(self, connection) -> None:
        """To a waiting request if any (None wakes it to open a connection itself), else idle."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is not None:
            self.idle.append(connection)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self.open -= 1
        writer.close()
        self._give_back(None)

    async def request(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        """Send one prepared request; (HTTP status, body). A connection that failed, timed out
        or was told to close is closed, never reused."""
        async with asyncio.timeout(timeout):
            reader, writer = await self._take()
            try:
                writer.write(data)
                head, body = await read_response(reader)
            except BaseException:
                self._drop(writer)
                raise
        if head.keep_alive:
            self._give_back((reader, writer))
        else:
            self._drop(writer)
        return head.status, body

    async def close(self) -> None:
        while self.idle:
            _, writer = self.idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
