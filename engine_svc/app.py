"""Composition root of the engine service: the single writer of the exchange.

Each round: take up to `batch_size` commands from the Redis stream, apply the ones not applied
before, write their EngineBatches to Kafka and wait for the acks, and only then publish to Redis
(caches, pub/sub, replies to gateways) and acknowledge the stream entries. The log is the truth:
on start the engine restores the newest snapshot and replays the log after it, checking that the
replay gives the logged events byte for byte (engine_svc.recovery).

Faults heal in place. Redis lost (or back empty): the loop backs off, reconnects, rewrites every
cache and reads its unacknowledged entries again; gateways resend what they still wait for, and
the session ledger answers a resend without applying it twice. A write the log refused: the
engine rebuilds itself from the log and reads the stream again. Kafka merely slow or stopped:
the write waits (the idempotent producer retries), and the engine reports NOT_SERVING meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from engine_svc.codec import settings_to_proto
from engine_svc.config import EngineConfig
from engine_svc.engine import MatchingEngine
from engine_svc.recovery import recover
from engine_svc.rules import RULES_VERSION
from engine_svc.servicer import CommandHandler
from engine_svc.views import EngineViews
from exchange.internal.v1 import engine_pb2
from mockex import names
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.settings import shown_url
from mockex.telemetry import extract_context, tracer, tracing_enabled

log = logging.getLogger("engine_svc")

COMMAND_FIELD = b"command"
RETRY_DELAYS_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Back-off between attempts while Redis or Kafka is away; the last one repeats."""
STATUS_EVERY_SECONDS = 1.0
LOG_WAIT_NOT_SERVING_SECONDS = 1.0
FINAL_SNAPSHOT_SECONDS = 5.0
"""A write to the log that has waited this long makes the engine report NOT_SERVING."""

T = TypeVar("T")


class LogWriteFailed(Exception):
    """Kafka refused or lost a write: the engine's memory may be ahead of the log."""


def retry_delay(attempt: int) -> float:
    return RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]


def with_log_offset(payload: bytes, offset: int) -> bytes:
    """`payload` (a serialized EngineBatch) with log_offset (field 4) appended: protobuf parses
    concatenated messages as one, so the batch is not serialized a second time."""
    value = offset
    encoded = bytearray(b"\x20")  # field 4, varint
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            encoded.append(byte | 0x80)
        else:
            encoded.append(byte)
            return payload + bytes(encoded)


class EngineApp:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.redis = Redis.from_url(config.redis_url)
        self.producer: AIOKafkaProducer | None = None
        self.handler = CommandHandler(MatchingEngine())
        self.views = EngineViews(self.handler.engine)
        self.grpc: GrpcServer | None = None
        self.last_offset = -1
        """Offset of the last batch in the log that the engine's state includes."""
        self.incarnation = secrets.token_hex(6)
        self._recovered = False
        self._views_fresh = False
        """Every cache rewritten since Redis last came up (or since this process started)."""
        self._redis_reachable = False
        self._log_wait_started: float | None = None
        self._logged_since_snapshot = 0
        self._last_snapshot_time = time.monotonic()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None

    @property
    def engine(self) -> MatchingEngine:
        return self.handler.engine

    async def start(self) -> None:
        """Health answers from the first moment (liveness SERVING, readiness NOT_SERVING until
        the log is replayed and the caches are written)."""
        self.grpc = await start_grpc_server(
            self.config.grpc_address, lambda server: None, [], serving=False
        )
        log.info("engine_svc health on port %d", self.grpc.port)
        self._status_task = asyncio.create_task(self._report_status(), name="engine-status")
        await self._rebuild()
        self._loop_task = asyncio.create_task(self._run_loop(), name="engine-loop")

    async def stop(self) -> None:
        self._stopping.set()
        if self._loop_task:
            await asyncio.gather(self._loop_task, return_exceptions=True)
            if self._recovered and self._logged_since_snapshot:
                # A snapshot at the end lets the next start (perhaps a newer engine) skip replay;
                # bounded, since the log may be gone already.
                try:
                    await asyncio.wait_for(self._take_snapshot(), FINAL_SNAPSHOT_SECONDS)
                except TimeoutError:
                    log.warning(
                        "no snapshot at stop: the log did not answer in %ss", FINAL_SNAPSHOT_SECONDS
                    )
        if self._status_task:
            self._status_task.cancel()
            await asyncio.gather(self._status_task, return_exceptions=True)
        if self.grpc:
            await self.grpc.stop()
        if self.producer:
            try:
                await asyncio.wait_for(self.producer.stop(), FINAL_SNAPSHOT_SECONDS)
            except TimeoutError:
                log.warning("the log producer did not stop in %ss", FINAL_SNAPSHOT_SECONDS)
        await self.redis.aclose()

    async def wait(self) -> None:
        """Until stopped; re-raises a failure of the loop (the process should then exit)."""
        assert self._loop_task is not None
        await self._loop_task

    # ---- the log ----------------------------------------------------------------------------

    async def _retrying_log(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Run `step`, again and again while Kafka is unreachable."""
        attempt = 0
        while True:
            try:
                return await step()
            except KafkaError as exc:
                delay = retry_delay(attempt)
                attempt += 1
                log.warning(
                    "log unavailable while %s bootstrap=%s error=%r attempt=%d retry_in=%.1fs",
                    what,
                    self.config.kafka_bootstrap,
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _rebuild(self) -> None:
        """A fresh producer, the state the log holds, and the settings this start brings; all
        again from the top when Kafka fails part way (memory may be ahead of the log then)."""
        self._recovered = False

        async def rebuild() -> None:
            await self._connect_log()
            await self._recover()
            await self._configure()

        await self._retrying_log(rebuild, "rebuilding from the log")
        self._recovered = True

    async def _connect_log(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        producer = AIOKafkaProducer(
            bootstrap_servers=self.config.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            # A round sends all its batches before it waits, so lingering only adds latency.
            linger_ms=0,
            max_batch_size=1024 * 1024,
            max_request_size=names.MAX_RECORD_BYTES,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def _recover(self) -> None:
        """The engine as the log says (engine_svc.recovery)."""
        recovered = await recover(self.config)
        self.handler, self.views = recovered.handler, recovered.views
        self.last_offset = recovered.last_offset
        self._views_fresh = False
        log.info(
            "recovered snapshot_offset=%s replayed=%d unchecked_older_rules=%d last_offset=%d "
            "open_orders=%d seconds=%.2f",
            "-" if recovered.snapshot_offset is None else recovered.snapshot_offset,
            recovered.replayed,
            recovered.unchecked,
            recovered.last_offset,
            len(self.engine.open_orders),
            recovered.seconds,
        )

    async def _configure(self) -> None:
        """Log the settings this start brings: a new log's first settings, a changed
        environment variable, or this engine's newer rules version."""
        config = self.config
        engine = self.engine
        current = engine.settings
        desired = dataclasses.replace(
            current,
            rules_version=RULES_VERSION,
            short_limit=current.short_limit if config.short_limit is None else config.short_limit,
            max_open_orders=(
                current.max_open_orders
                if config.max_open_orders is None
                else config.max_open_orders
            ),
        )
        new_log = self.last_offset < 0
        commands = []
        if desired != current:
            configure = engine_pb2.ConfigureExchangeCommand()
            configure.settings.CopyFrom(settings_to_proto(desired))
            commands.append(
                engine_pb2.EngineCommand(
                    command_id=f"configure-{self.incarnation}", configure_exchange=configure
                )
            )
        if config.market_open is not None and config.market_open != engine.market_open:
            if new_log:
                commands.append(
                    engine_pb2.EngineCommand(
                        command_id=f"close-{self.incarnation}",
                        close_market=engine_pb2.CloseMarketCommand(),
                    )
                )
            else:
                log.warning(
                    "MOCKEX_MARKET_OPEN=%s ignored: the log says the market is %s; the admin "
                    "API opens and closes it (POST /admin/market/open, /admin/market/close)",
                    "1" if config.market_open else "0",
                    "open" if engine.market_open else "closed",
                )
        if not commands:
            return
        batches = []
        for command in commands:
            command.timestamp_ns = time.time_ns()
            batches.append(self.handler.batch(command))
        await self._log(batches, [batch.SerializeToString() for batch in batches])
        for batch in batches:
            self.views.record(batch)
        log.info(
            "settings logged %s",
            "; ".join(desired.changes_from(current)) or "(market closed at start)",
        )

    async def _log(self, batches: list[engine_pb2.EngineBatch], payloads: list[bytes]) -> list[int]:
        """Write the batches to the log and wait for every ack; their offsets."""
        assert self.producer is not None
        self._log_wait_started = time.monotonic()
        try:
            sends = [
                await self.producer.send(
                    self.config.events_topic, payload, key=_batch_key(batch), partition=0
                )
                for batch, payload in zip(batches, payloads, strict=True)
            ]
            metadata = await asyncio.gather(*sends)
        finally:
            self._log_wait_started = None
        offsets = [record.offset for record in metadata]
        self.last_offset = offsets[-1]
        self._logged_since_snapshot += len(offsets)
        return offsets

    # ---- the loop -------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        # Entries delivered before a restart or a fault and never acknowledged come first.
        pending_first = True
        redis_failures = 0
        while not self._stopping.is_set():
            try:
                if not self._views_fresh:
                    await self._rewrite_caches()
                entries = await self._read_commands(pending_first)
                if pending_first and not entries:
                    pending_first = False
                    continue
                if entries:
                    await self._process(entries)
                if self._snapshot_is_due():
                    await self._take_snapshot()
                if redis_failures:
                    log.info("redis reachable again after %d failed attempts", redis_failures)
                    redis_failures = 0
            except (RedisError, OSError) as exc:
                self._views_fresh = False
                pending_first = True
                delay = retry_delay(redis_failures)
                redis_failures += 1
                if redis_failures == 1 or redis_failures % 20 == 0:
                    log.warning(
                        "redis unavailable url=%s error=%r attempt=%d retry_in=%.1fs",
                        shown_url(self.config.redis_url),
                        exc,
                        redis_failures,
                        delay,
                    )
                await asyncio.sleep(delay)
            except LogWriteFailed as exc:
                log.error("the log refused a write (%s); rebuilding the engine from the log", exc)
                await self._rebuild()
                pending_first = True

    async def _read_commands(self, pending_first: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        response = await self.redis.xreadgroup(
            names.ENGINE_GROUP,
            self.config.consumer_name,
            {self.config.commands_stream: "0" if pending_first else ">"},
            count=self.config.batch_size,
            block=None if pending_first else 100,
        )
        return response[0][1] if response else []

    async def _rewrite_caches(self) -> None:
        """Every cache from the engine's state, then the marker that says they are complete."""
        try:
            await self.redis.xgroup_create(
                self.config.commands_stream, names.ENGINE_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        pipeline = self.redis.pipeline(transaction=False)
        self.views.write_everything(pipeline)
        pipeline.set(names.VIEWS_KEY, self.incarnation)
        await pipeline.execute()
        self.views.written()
        self._views_fresh = True
        log.info(
            "caches written symbols=%d accounts=%d open_orders=%d last_offset=%d",
            len(self.engine.symbols),
            len(self.engine.accounts),
            len(self.engine.open_orders),
            self.last_offset,
        )

    async def _process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        handler = self.handler
        batches: list[engine_pb2.EngineBatch] = []
        resends: list[engine_pb2.EngineCommand] = []
        tracing = tracing_enabled()
        for _, fields in entries:
            command = engine_pb2.EngineCommand.FromString(fields[COMMAND_FIELD])
            if handler.is_applied(command):
                resends.append(command)
                continue
            command.timestamp_ns = time.time_ns()
            if tracing and command.trace_context:
                with tracer("engine_svc").start_as_current_span(
                    "engine.apply", context=extract_context(command.trace_context)
                ):
                    batches.append(handler.batch(command))
            else:
                batches.append(handler.batch(command))

        payloads = [batch.SerializeToString() for batch in batches]
        offsets: list[int] = []
        if batches:
            try:
                offsets = await self._log(batches, payloads)
            except KafkaError as exc:
                raise LogWriteFailed(repr(exc)) from exc
            for batch in batches:
                self.views.record(batch)

        pipeline = self.redis.pipeline(transaction=False)
        self.views.write(pipeline)
        for batch, payload, offset in zip(batches, payloads, offsets, strict=True):
            published = with_log_offset(payload, offset)
            pipeline.publish(names.EVENTS_CHANNEL, published)
            if batch.command.reply_to:
                pipeline.publish(batch.command.reply_to, published)
        for command in resends:
            if command.reply_to:
                pipeline.publish(command.reply_to, self._already_applied(command))
        pipeline.xack(
            self.config.commands_stream, names.ENGINE_GROUP, *[raw_id for raw_id, _ in entries]
        )
        # Everything up to here is in Kafka, and a resend is answered from the ledger anyway:
        # keep the stream as long as the backlog, which is what the gateway's overload check reads.
        pipeline.xtrim(self.config.commands_stream, minid=entries[-1][0], approximate=True)
        await pipeline.execute()
        self.views.written()

    def _already_applied(self, command: engine_pb2.EngineCommand) -> bytes:
        reply = engine_pb2.EngineBatch(already_applied=True, log_offset=max(self.last_offset, 0))
        reply.command.command_id = command.command_id
        reply.command.session_id = command.session_id
        reply.command.session_sequence = command.session_sequence
        return reply.SerializeToString()

    # ---- status -----------------------------------------------------------------------------

    def _serving(self) -> tuple[bool, str]:
        """Whether the engine takes orders now, and if not why, in a participant's words."""
        if not self._recovered:
            return False, "the matching engine is starting (replaying its log); retry shortly"
        waiting = self._log_wait_started
        if waiting is not None and time.monotonic() - waiting > LOG_WAIT_NOT_SERVING_SECONDS:
            return False, "the exchange's log is not answering; orders are not being taken"
        if not self._views_fresh:
            return False, "the exchange is rebuilding its caches; retry shortly"
        return True, ""

    async def _report_status(self) -> None:
        """Every second: readiness on the health service, EngineStatus in Redis for the
        gateways, and a check that Redis still holds the caches (it may have come back empty)."""
        while True:
            serving, reason = self._serving()
            if self.grpc is not None:
                await self.grpc.set_serving(serving and self._redis_reachable)
            status = engine_pb2.EngineStatus(
                serving=serving,
                reason=reason,
                log_offset=self.last_offset,
                timestamp_ns=time.time_ns(),
            )
            try:
                pipeline = self.redis.pipeline(transaction=False)
                pipeline.set(
                    names.ENGINE_STATUS_KEY,
                    status.SerializeToString(),
                    ex=names.ENGINE_STATUS_TTL_SECONDS,
                )
                pipeline.exists(names.VIEWS_KEY)
                _, views_present = await pipeline.execute()
                self._redis_reachable = True
                if self._views_fresh and not views_present:
                    log.warning("redis lost the caches (restarted empty?); rewriting them")
                    self._views_fresh = False
            except (RedisError, OSError):
                self._redis_reachable = False
            await asyncio.sleep(STATUS_EVERY_SECONDS)

    # ---- snapshots --------------------------------------------------------------------------

    def _snapshot_is_due(self) -> bool:
        if not self._logged_since_snapshot:
            return False
        every = self.config.snapshot_every
        if every and self._logged_since_snapshot >= every:
            return True
        return time.monotonic() - self._last_snapshot_time >= self.config.snapshot_interval_seconds

    async def _take_snapshot(self) -> None:
        """Write a snapshot; a failure is logged, not fatal: the log alone still rebuilds all."""
        try:
            await self._write_snapshot()
        except (KafkaError, OSError):
            log.exception("snapshot failed log_offset=%d; will retry", self.last_offset)
        self._logged_since_snapshot = 0
        self._last_snapshot_time = time.monotonic()

    async def _write_snapshot(self) -> None:
        assert self.producer is not None
        snapshot = self.handler.snapshot()
        snapshot.log_offset = self.last_offset
        snapshot.timestamp_ns = time.time_ns()
        self.views.add_to_snapshot(snapshot)
        await self.producer.send_and_wait(
            self.config.snapshots_topic, snapshot.SerializeToString(), partition=0
        )
        log.info(
            "snapshot log_offset=%d open_orders=%d", self.last_offset, len(self.engine.open_orders)
        )


def _batch_key(batch: engine_pb2.EngineBatch) -> bytes:
    """Records are keyed by symbol (empty for market-wide commands)."""
    command = batch.command
    if command.WhichOneof("command") == "place_order":
        return command.place_order.symbol.encode()
    for event in batch.events:
        if event.symbol:
            return event.symbol.encode()
    return b""
