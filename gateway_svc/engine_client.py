"""Sends commands to the engine's Redis stream and waits for the engine's answer, through faults.

Each gateway process is one session: its commands are numbered 1, 2, 3... in the order one
writer task appends them to the stream (batched: what arrives together goes in one pipeline).
A command stays pending until its answer arrives, however long that takes; when Redis comes back
(a failed write, or the reply subscription confirmed again after a reconnect) every pending
command is sent again, and the engine, which applies each (session, number) once, answers a
command it already applied with `already_applied` instead of applying it twice. So a command
the gateway took is executed exactly once, even when its caller got DEADLINE_EXCEEDED.

Before taking a command the client checks, from a sample refreshed every 100 ms, that Redis
answers, the engine reports SERVING and its queue is not overloaded; otherwise the caller gets
EngineUnavailable at once: the command was never sent, so it is not an order. Admission control:
while `max_pending` commands of this gateway wait for their answers, a new one is refused at once
with EngineBusy (RESOURCE_EXHAUSTED, retry after a second) instead of queueing behind them, so
the latency of what is taken stays bounded under overload and nobody's call is left to time out.
An urgent command (an organizer's) is taken anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from exchange.internal.v1 import engine_pb2
from mockex import names
from mockex.telemetry import inject_context

log = logging.getLogger("gateway_svc.engine_client")

COMMAND_FIELD = "command"
SAMPLE_EVERY_SECONDS = 0.1
STATUS_STALE_SECONDS = 3.0
"""An engine status older than this (by the engine's own clock) counts as missing."""
RETRY_DELAYS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
SESSION_IDLE_SECONDS = 3600.0
"""With nothing pending and no command for this long, the next command opens a new session:
the engine forgets sessions idle for a day (engine_svc.sessions.IDLE_SESSION_NS), so a gateway
never sends under a session the engine may have forgotten."""


class EngineTimeout(Exception):
    """The engine did not answer in time; the command is still pending and will be executed."""


class EngineUnavailable(Exception):
    """The command was not sent: the reason, in a participant's words."""


class EngineBusy(Exception):
    """The command was not sent: too many of this gateway's commands are waiting already."""

    RETRY_AFTER_SECONDS = 1


def retry_delay(attempt: int) -> float:
    return RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]


class PendingCommand:
    __slots__ = ("command_id", "sequence", "payload", "answer")

    def __init__(
        self, command_id: str, sequence: int, payload: bytes, answer: asyncio.Future
    ) -> None:
        self.command_id = command_id
        self.sequence = sequence
        self.payload = payload
        self.answer: asyncio.Future[engine_pb2.EngineBatch] = answer


class EngineClient:
    def __init__(
        self,
        redis: Redis,
        commands_stream: str,
        gateway_id: str,
        max_queued_commands: int,
        max_pending: int = 0,
    ) -> None:
        self._process_id = f"{gateway_id}.{secrets.token_hex(4)}"
        self._session_number = 1
        self.session_id = f"{self._process_id}.1"
        """New for every process (and after a long idle time): the engine's ledger tells its
        commands from another's."""
        self._redis = redis
        self._stream = commands_stream
        self._max_queued = max_queued_commands
        self._max_pending = max_pending
        """0: no admission limit."""
        self._reply_channel = names.reply_channel(self._process_id)
        self._next_sequence = 1
        self._last_submit = time.monotonic()
        self._pending: dict[int, PendingCommand] = {}
        """By sequence, in sequence order (dicts keep insertion order)."""
        self._by_command_id: dict[str, PendingCommand] = {}
        self._outbox: list[int] = []
        self._resend_all = False
        self._wake = asyncio.Event()
        self._writer_ok = True
        """False from a failed write until a write goes through again."""
        self._subscribed = False
        self._redis_ok = False
        self._queue_length = 0
        self._status: engine_pb2.EngineStatus | None = None
        self.views_ready = False
        """The engine's caches in Redis are complete (names.VIEWS_KEY), as last sampled."""
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Starts the reader, writer and sampler; none waits for Redis (a gateway started
        during an outage reports NOT_SERVING and heals by itself)."""
        self._tasks = [
            asyncio.create_task(self._read_replies(), name="engine-replies"),
            asyncio.create_task(self._write_commands(), name="engine-commands"),
            asyncio.create_task(self._sample(), name="engine-sample"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def unavailable_reason(self) -> str:
        """Why a new command would not be taken now; "" when it would."""
        if not (self._redis_ok and self._subscribed and self._writer_ok):
            return "the exchange cannot reach its order queue right now"
        status = self._status
        if status is None or time.time_ns() - status.timestamp_ns > STATUS_STALE_SECONDS * 1e9:
            return "the matching engine is not running"
        if not status.serving:
            return status.reason or "the matching engine is not taking orders"
        if self._queue_length > self._max_queued:
            return "the engine is overloaded"
        return ""

    async def execute(
        self, command: engine_pb2.EngineCommand, timeout: float, urgent: bool = False
    ) -> engine_pb2.EngineBatch:
        """Send `command` (its command_id must be unique) and wait for the engine's batch.

        EngineUnavailable, EngineBusy: not sent. EngineTimeout: sent, and will still be executed.
        """
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(reason)
        if not urgent and self._max_pending and len(self._pending) >= self._max_pending:
            raise EngineBusy(
                f"the exchange is busy ({len(self._pending)} orders waiting for the matching "
                f"engine at this gateway); retry after {EngineBusy.RETRY_AFTER_SECONDS}s"
            )
        pending = self._submit(command)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.answer), timeout)
        except TimeoutError as exc:
            raise EngineTimeout(command.command_id) from exc

    def _submit(self, command: engine_pb2.EngineCommand) -> PendingCommand:
        now = time.monotonic()
        if not self._pending and now - self._last_submit >= SESSION_IDLE_SECONDS:
            self._session_number += 1
            self.session_id = f"{self._process_id}.{self._session_number}"
            self._next_sequence = 1
        self._last_submit = now
        sequence = self._next_sequence
        self._next_sequence += 1
        command.session_id = self.session_id
        command.session_sequence = sequence
        command.reply_to = self._reply_channel
        inject_context(command.trace_context)
        answer: asyncio.Future[engine_pb2.EngineBatch] = asyncio.get_running_loop().create_future()
        pending = PendingCommand(command.command_id, sequence, command.SerializeToString(), answer)
        self._pending[sequence] = pending
        self._by_command_id[command.command_id] = pending
        self._outbox.append(sequence)
        self._wake.set()
        return pending

    def _resend_pending(self, why: str) -> None:
        if self._pending:
            log.info("resending pending commands count=%d reason=%s", len(self._pending), why)
            self._resend_all = True
            self._wake.set()

    async def _write_commands(self) -> None:
        """The session's one writer: appends in sequence order, one pipeline per wake-up."""
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._resend_all:
                self._resend_all = False
                self._outbox.clear()
                batch = list(self._pending.values())
            else:
                sequences, self._outbox = self._outbox, []
                batch = [self._pending[s] for s in sequences if s in self._pending]
            if not batch:
                continue
            try:
                pipeline = self._redis.pipeline(transaction=False)
                for pending in batch:
                    pipeline.xadd(self._stream, {COMMAND_FIELD: pending.payload})
                await pipeline.execute()
                if failures:
                    log.info("order queue reachable again after %d failed writes", failures)
                failures = 0
                self._writer_ok = True
            except (RedisError, OSError) as exc:
                self._writer_ok = False
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "order queue write failed error=%r attempt=%d pending=%d",
                        exc,
                        failures,
                        len(self._pending),
                    )
                # What was in flight may or may not have reached Redis: send everything again.
                self._resend_all = True
                self._wake.set()
                await asyncio.sleep(retry_delay(failures))

    async def _read_replies(self) -> None:
        """The session's reply channel. Every subscription confirmation after a (re)connect
        means replies may have been missed: send the pending commands again."""
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._reply_channel)
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == "subscribe":
                        self._subscribed = True
                        failures = 0
                        self._resend_pending("reply channel subscribed")
                    elif kind == "message":
                        self._resolve(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._subscribed = False
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("reply channel lost error=%r attempt=%d", exc, failures)
                await asyncio.sleep(retry_delay(failures))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _resolve(self, data: bytes) -> None:
        batch = engine_pb2.EngineBatch.FromString(data)
        pending = self._by_command_id.pop(batch.command.command_id, None)
        if pending is None:
            return  # a second answer (to a resend): the first one already settled it
        del self._pending[pending.sequence]
        if not pending.answer.done():
            pending.answer.set_result(batch)

    async def _sample(self) -> None:
        """Redis reachability, the engine's status, its backlog and the caches' marker."""
        while True:
            try:
                pipeline = self._redis.pipeline(transaction=False)
                pipeline.xlen(self._stream)
                pipeline.get(names.ENGINE_STATUS_KEY)
                pipeline.exists(names.VIEWS_KEY)
                queue_length, raw_status, views = await pipeline.execute()
                self._queue_length = queue_length
                self._status = (
                    engine_pb2.EngineStatus.FromString(raw_status) if raw_status else None
                )
                self.views_ready = bool(views)
                self._redis_ok = True
            except (RedisError, OSError):
                self._redis_ok = False
                self.views_ready = False
            await asyncio.sleep(SAMPLE_EVERY_SECONDS)
