"""Composition root of the engine service: the single writer of the exchange.

Each round: take up to `batch_size` commands from the Redis stream, apply them, write their
EngineBatches to Kafka and wait for acks=all, and only then publish to Redis (caches, pub/sub,
replies to gateways) and acknowledge the stream entries. A crash anywhere loses nothing
acknowledged: on start the engine restores the newest snapshot, replays the Kafka log after it,
and skips stream entries that the log already holds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine_svc.codec import restore_engine, snapshot_engine
from engine_svc.config import EngineConfig
from engine_svc.engine import MatchingEngine
from engine_svc.servicer import CommandHandler
from engine_svc.views import EngineViews
from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from mockex import names
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.telemetry import extract_context, setup_tracing, tracer

log = logging.getLogger("engine_svc")

COMMAND_FIELD = b"command"


def stream_id_key(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class EngineApp:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.redis = Redis.from_url(config.redis_url)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=config.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            # A round sends all its batches before it waits, so lingering only adds latency.
            linger_ms=0,
            max_batch_size=1024 * 1024,
            max_request_size=names.MAX_RECORD_BYTES,
        )
        self.handler = CommandHandler(MatchingEngine())
        self.views = EngineViews(self.handler.engine)
        self.grpc: GrpcServer | None = None
        self.last_offset = -1
        self.last_stream_id = ""
        self._logged_since_snapshot = 0
        self._last_snapshot_time = time.monotonic()
        self._last_heartbeat = 0.0
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._tracing = setup_tracing("engine_svc")

    @property
    def engine(self) -> MatchingEngine:
        return self.handler.engine

    async def start(self) -> None:
        await self.producer.start()
        await self._recover()
        await self._ensure_group()
        self.grpc = await start_grpc_server(self.config.grpc_address, lambda server: None, [])
        self._loop_task = asyncio.create_task(self._run_loop(), name="engine-loop")

    async def stop(self) -> None:
        self._stopping.set()
        if self._loop_task:
            await self._loop_task
        if self.grpc:
            await self.grpc.stop()
        await self.producer.stop()
        await self.redis.aclose()

    async def wait(self) -> None:
        """Until stopped; re-raises a failure of the loop (the process should then exit)."""
        assert self._loop_task is not None
        await self._loop_task

    # ---- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        started = time.monotonic()
        snapshot = await self._latest_snapshot()
        if snapshot is not None:
            engine = restore_engine(snapshot)
            self.handler = CommandHandler(engine)
            self.handler.users = {user.api_key_sha256: user for user in snapshot.users}
            self.views = EngineViews(engine)
            self.last_offset = snapshot.log_offset
            self.last_stream_id = snapshot.last_stream_id
        else:
            engine = self.handler.engine
            engine.market_open = self.config.market_open
            engine.short_limit = self.config.short_limit
            engine.max_open_orders = self.config.max_open_orders
        replayed = await self._replay_log(self.last_offset + 1)
        await self._seed_open_order_fills()
        self.views.mark_everything_changed(self.handler.users.values())
        pipeline = self.redis.pipeline(transaction=False)
        self.views.write(pipeline, time.time_ns())
        await pipeline.execute()
        log.info(
            "recovered snapshot_offset=%s replayed=%d last_offset=%d open_orders=%d seconds=%.2f",
            snapshot.log_offset if snapshot else "-",
            replayed,
            self.last_offset,
            len(engine.open_orders),
            time.monotonic() - started,
        )

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.config.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            fetch_max_bytes=names.MAX_RECORD_BYTES,
            max_partition_fetch_bytes=names.MAX_RECORD_BYTES,
        )

    async def _latest_snapshot(self) -> engine_pb2.EngineSnapshot | None:
        consumer = self._consumer()
        partition = TopicPartition(self.config.snapshots_topic, 0)
        await consumer.start()
        try:
            consumer.assign([partition])
            end = (await consumer.end_offsets([partition]))[partition]
            if end == 0:
                return None
            consumer.seek(partition, end - 1)
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            return engine_pb2.EngineSnapshot.FromString(record.value)
        finally:
            await consumer.stop()

    async def _replay_log(self, from_offset: int) -> int:
        """Re-apply the logged commands (with their logged times) after the snapshot."""
        consumer = self._consumer()
        partition = TopicPartition(self.config.events_topic, 0)
        await consumer.start()
        replayed = 0
        try:
            consumer.assign([partition])
            end = (await consumer.end_offsets([partition]))[partition]
            if from_offset >= end:
                return 0
            consumer.seek(partition, from_offset)
            while self.last_offset < end - 1:
                records = await consumer.getmany(partition, timeout_ms=1000, max_records=5000)
                for record in records.get(partition, ()):
                    batch = engine_pb2.EngineBatch.FromString(record.value)
                    events = self.handler.apply(batch.command)
                    if len(events) != len(batch.events):
                        raise RuntimeError(
                            f"replay of offset {record.offset} gave {len(events)} events, "
                            f"the log has {len(batch.events)}: the engine is not deterministic"
                        )
                    self.views.record(batch)
                    self.last_offset = record.offset
                    if batch.stream_id:
                        self.last_stream_id = batch.stream_id
                    replayed += 1
        finally:
            await consumer.stop()
        return replayed

    async def _seed_open_order_fills(self) -> None:
        """Fills of orders still open are in their cached objects; keep listing them."""
        order_ids = list(self.engine.open_orders)
        for start in range(0, len(order_ids), 1000):
            chunk = order_ids[start : start + 1000]
            cached = await self.redis.mget([names.order_key(order_id) for order_id in chunk])
            for order_id, raw in zip(chunk, cached, strict=True):
                if raw and order_id not in self.views.open_order_fills:
                    fills = list(types_pb2.Order.FromString(raw).fills)
                    if fills:
                        self.views.open_order_fills[order_id] = fills

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                self.config.commands_stream, names.ENGINE_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ---- the loop -------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        config = self.config
        # Entries delivered to us before a restart and never acknowledged come first.
        pending_first = True
        while not self._stopping.is_set():
            response = await self.redis.xreadgroup(
                names.ENGINE_GROUP,
                config.consumer_name,
                {config.commands_stream: "0" if pending_first else ">"},
                count=config.batch_size,
                block=None if pending_first else 100,
            )
            entries = response[0][1] if response else []
            if pending_first and not entries:
                pending_first = False
                continue
            if entries:
                await self._process(entries)
            if self._snapshot_is_due():
                await self._take_snapshot()
            await self._heartbeat()

    async def _process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        handler = self.handler
        last_applied = stream_id_key(self.last_stream_id) if self.last_stream_id else (-1, -1)
        batches: list[engine_pb2.EngineBatch] = []
        for raw_id, fields in entries:
            stream_id = raw_id.decode()
            if stream_id_key(stream_id) <= last_applied:
                continue  # already in the log (a restart re-delivers it): only acknowledge it
            command = engine_pb2.EngineCommand.FromString(fields[COMMAND_FIELD])
            command.timestamp_ns = time.time_ns()
            if self._tracing and command.trace_context:
                with tracer("engine_svc").start_as_current_span(
                    "engine.apply", context=extract_context(command.trace_context)
                ):
                    batch = handler.batch(command, stream_id)
            else:
                batch = handler.batch(command, stream_id)
            batches.append(batch)
            self.last_stream_id = stream_id

        payloads = [batch.SerializeToString() for batch in batches]
        if payloads:
            sends = [
                await self.producer.send(
                    self.config.events_topic,
                    payload,
                    key=_batch_key(batch),
                    partition=0,
                )
                for batch, payload in zip(batches, payloads, strict=True)
            ]
            metadata = await asyncio.gather(*sends)
            self.last_offset = metadata[-1].offset
            self._logged_since_snapshot += len(payloads)

        pipeline = self.redis.pipeline(transaction=False)
        for batch in batches:
            self.views.record(batch)
        self.views.write(pipeline, time.time_ns())
        for batch, payload in zip(batches, payloads, strict=True):
            pipeline.publish(names.EVENTS_CHANNEL, payload)
            if batch.command.reply_to:
                pipeline.publish(batch.command.reply_to, payload)
        pipeline.xack(
            self.config.commands_stream, names.ENGINE_GROUP, *[raw_id for raw_id, _ in entries]
        )
        # Everything up to here is in Kafka, and a restart skips it by stream id anyway: keep the
        # stream as long as the backlog, which is what the gateway's overload check reads.
        pipeline.xtrim(self.config.commands_stream, minid=entries[-1][0], approximate=True)
        await pipeline.execute()

    async def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= 1.0:
            await self.redis.set(names.ENGINE_ALIVE_KEY, b"1", ex=5)
            self._last_heartbeat = now

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
        except Exception:
            log.exception("snapshot failed log_offset=%d; will retry", self.last_offset)
        self._logged_since_snapshot = 0
        self._last_snapshot_time = time.monotonic()

    async def _write_snapshot(self) -> None:
        snapshot = snapshot_engine(self.engine)
        snapshot.log_offset = self.last_offset
        snapshot.last_stream_id = self.last_stream_id
        snapshot.timestamp_ns = time.time_ns()
        snapshot.users.extend(self.handler.users.values())
        await self.producer.send_and_wait(
            self.config.snapshots_topic, snapshot.SerializeToString(), partition=0
        )
        log.info(
            "snapshot log_offset=%d open_orders=%d", self.last_offset, len(self.engine.open_orders)
        )


def _batch_key(batch: engine_pb2.EngineBatch) -> bytes:
    """Records are keyed by symbol (empty for market-wide commands)."""
    command = batch.command
    kind = command.WhichOneof("command")
    if kind == "place_order":
        return command.place_order.symbol.encode()
    for event in batch.events:
        if event.symbol:
            return event.symbol.encode()
    return b""
