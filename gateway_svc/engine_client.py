"""Sends commands to the engine's Redis stream and waits for the engine's answer.

The engine publishes each EngineBatch to the reply channel named in the command once the batch is
durable in Kafka; a single subscription per gateway routes batches to waiting requests by
command id. A request that times out leaves its command in the queue: the engine still
processes it exactly once, and its final state becomes visible through the order caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2
from mockex import names
from mockex.telemetry import inject_context

log = logging.getLogger("gateway_svc.engine_client")

COMMAND_FIELD = "command"
QUEUE_LENGTH_EVERY_SECONDS = 0.1


class EngineTimeout(Exception):
    """The engine did not answer in time; the command may still be processed."""


class EngineClient:
    def __init__(self, redis: Redis, commands_stream: str, gateway_id: str) -> None:
        self._redis = redis
        self._stream = commands_stream
        self._reply_channel = names.reply_channel(gateway_id)
        self._waiting: dict[str, asyncio.Future[engine_pb2.EngineBatch]] = {}
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task | None = None
        self._queue_length = 0
        self._queue_length_read_at = float("-inf")

    async def start(self) -> None:
        await self._pubsub.subscribe(self._reply_channel)
        self._reader = asyncio.create_task(self._read_replies(), name="engine-replies")

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()

    async def queue_length(self) -> int:
        """The engine's backlog, read at most every QUEUE_LENGTH_EVERY_SECONDS (a load check,
        not an exact figure: one Redis round trip less per order)."""
        now = time.monotonic()
        if now >= self._queue_length_read_at + QUEUE_LENGTH_EVERY_SECONDS:
            self._queue_length = await self._redis.xlen(self._stream)
            self._queue_length_read_at = now
        return self._queue_length

    async def execute(
        self, command: engine_pb2.EngineCommand, timeout: float
    ) -> engine_pb2.EngineBatch:
        """Queue `command` (its command_id must be unique) and wait for the engine's batch."""
        command.reply_to = self._reply_channel
        inject_context(command.trace_context)
        future: asyncio.Future[engine_pb2.EngineBatch] = asyncio.get_running_loop().create_future()
        self._waiting[command.command_id] = future
        try:
            await self._redis.xadd(self._stream, {COMMAND_FIELD: command.SerializeToString()})
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise EngineTimeout(command.command_id) from exc
        finally:
            self._waiting.pop(command.command_id, None)

    async def _read_replies(self) -> None:
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] != "message":
                        continue
                    batch = engine_pb2.EngineBatch.FromString(message["data"])
                    future = self._waiting.get(batch.command.command_id)
                    if future is not None and not future.done():
                        future.set_result(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reply subscription failed; resubscribing")
                await asyncio.sleep(0.5)
