"""The engine as the log says: the newest usable snapshot, then every logged batch after it,
re-applied with its logged time and checked against what was logged.

A batch logged under this engine's rules version must come out byte for byte as logged; the
first that does not stops the start (LogMismatch), naming its offset. A batch of an older rules
version is replayed under today's rules unchecked (the rules changed on purpose); the engine
then logs the version it takes over with (EngineApp._configure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine_svc.codec import event_to_proto
from engine_svc.config import EngineConfig
from engine_svc.engine import MatchingEngine
from engine_svc.rules import RULES_VERSION
from engine_svc.servicer import CommandHandler
from engine_svc.views import EngineViews
from exchange.internal.v1 import engine_pb2
from mockex import names

log = logging.getLogger("engine_svc")

SNAPSHOT_READ_TIMEOUT_SECONDS = 30


class LogMismatch(RuntimeError):
    """Replaying the log gave other events than the log holds: the engine refuses to start."""


@dataclass
class Recovered:
    handler: CommandHandler
    views: EngineViews
    last_offset: int
    """Offset of the last batch the state includes; -1 for an empty log."""
    snapshot_offset: int | None
    replayed: int
    unchecked: int
    """Batches of an older rules version, replayed without the check."""
    seconds: float


def log_consumer(config: EngineConfig) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=config.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        fetch_max_bytes=names.MAX_RECORD_BYTES,
        max_partition_fetch_bytes=names.MAX_RECORD_BYTES,
    )


async def recover(config: EngineConfig) -> Recovered:
    started = time.monotonic()
    snapshot = await latest_snapshot(config)
    if snapshot is not None and snapshot.format_version == 0 and await log_starts_at_zero(config):
        # Converting a format-0 snapshot guesses its starting values; the whole log is exact.
        log.info(
            "snapshot of format 0 at log_offset=%d ignored: replaying the whole log",
            snapshot.log_offset,
        )
        snapshot = None
    replay = Replay(config, CommandHandler(MatchingEngine()))
    if snapshot is not None:
        try:
            replay = Replay(config, CommandHandler.restore(snapshot), snapshot)
        except (ValueError, KeyError) as exc:
            log.error(
                "snapshot at log_offset=%d unusable (%r); replaying the whole log",
                snapshot.log_offset,
                exc,
            )
    await replay.run()
    return Recovered(
        handler=replay.handler,
        views=replay.views,
        last_offset=replay.last_offset,
        snapshot_offset=replay.snapshot_offset,
        replayed=replay.replayed,
        unchecked=replay.unchecked,
        seconds=time.monotonic() - started,
    )


async def latest_snapshot(config: EngineConfig) -> engine_pb2.EngineSnapshot | None:
    consumer = log_consumer(config)
    partition = TopicPartition(config.snapshots_topic, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return None
        consumer.seek(partition, end - 1)
        record = await asyncio.wait_for(consumer.getone(), SNAPSHOT_READ_TIMEOUT_SECONDS)
        return engine_pb2.EngineSnapshot.FromString(record.value)
    finally:
        await consumer.stop()


async def log_starts_at_zero(config: EngineConfig) -> bool:
    """Whether the log still holds its first record (retention deleted none)."""
    consumer = log_consumer(config)
    partition = TopicPartition(config.events_topic, 0)
    await consumer.start()
    try:
        return (await consumer.beginning_offsets([partition]))[partition] == 0
    finally:
        await consumer.stop()


class Replay:
    """Re-applies the log after a snapshot (or from its start) to a handler and its views."""

    def __init__(
        self,
        config: EngineConfig,
        handler: CommandHandler,
        snapshot: engine_pb2.EngineSnapshot | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        self.views = EngineViews(handler.engine)
        self.snapshot_offset = None if snapshot is None else snapshot.log_offset
        self.last_offset = -1
        if snapshot is not None:
            self.views.restore_from_snapshot(snapshot)
            self.last_offset = snapshot.log_offset
        self.replayed = 0
        self.unchecked = 0

    async def run(self) -> None:
        topic = self.config.events_topic
        from_offset = self.last_offset + 1
        consumer = log_consumer(self.config)
        partition = TopicPartition(topic, 0)
        await consumer.start()
        try:
            consumer.assign([partition])
            begin = (await consumer.beginning_offsets([partition]))[partition]
            end = (await consumer.end_offsets([partition]))[partition]
            if from_offset < begin:
                raise LogMismatch(
                    f"{topic} starts at offset {begin} (older records were deleted) but the "
                    f"engine needs it from offset {from_offset}: restore the log or a snapshot "
                    "that covers the gap"
                )
            if from_offset > end:
                raise LogMismatch(
                    f"the newest snapshot covers {topic} up to offset {from_offset - 1}, but the "
                    f"log ends at offset {end - 1}: it is not the log the snapshot was taken from"
                )
            consumer.seek(partition, from_offset)
            while self.last_offset < end - 1:
                records = await consumer.getmany(partition, timeout_ms=1000, max_records=5000)
                for record in records.get(partition, ()):
                    self.apply(record.value, record.offset)
        finally:
            await consumer.stop()

    def apply(self, value: bytes, offset: int) -> None:
        """Apply one logged batch, checked against the log when it is of this rules version."""
        logged = engine_pb2.EngineBatch.FromString(value)
        command = logged.command
        version = self.handler.engine.settings.rules_version
        if command.WhichOneof("command") == "configure_exchange":
            # The engine that logged a ConfigureExchange ran the rules it names.
            version = command.configure_exchange.settings.rules_version
        events = [event_to_proto(event) for event in self.handler.apply(command)]
        if version == RULES_VERSION:
            self._check(offset, events, logged.events)
        else:
            self.unchecked += 1
        replayed = engine_pb2.EngineBatch(events=events)
        replayed.command.CopyFrom(command)
        self.views.record(replayed)
        self.last_offset = offset
        self.replayed += 1

    def _check(self, offset: int, events, logged_events) -> None:
        got = [event.SerializeToString() for event in events]
        expected = [event.SerializeToString() for event in logged_events]
        if got == expected:
            return
        index = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        raise LogMismatch(
            f"replay of {self.config.events_topic} offset {offset} differs from the log at event "
            f"{index} ({len(got)} events replayed, {len(expected)} logged): the log was altered, "
            "or the engine's rules changed without a new RULES_VERSION. The engine will not "
            "start on it."
        )
