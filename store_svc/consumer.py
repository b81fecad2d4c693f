"""Copies the engine's Kafka log into the database, and tells how far it has.

Each poll's rows and the next offsets to read are written in one transaction, so the store's
position in the log can never disagree with its rows. No consumer group: a restarted store seeks
to its stored positions at once instead of waiting for a group rebalance. (Writes stay
idempotent all the same, so re-reading the log from the start changes nothing.)

Kafka or the database going away is not the consumer's end: aiokafka reconnects by itself, a
failed poll or write is retried with back-off and a log line, and only a bug stops the task.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.internal.v1 import engine_pb2
from mockex import names
from mockex.telemetry import extract_context, tracer, tracing_enabled
from store_svc.db import DB_UNAVAILABLE, read_log_positions, read_participants, write_rows
from store_svc.freshness import WrittenOffset
from store_svc.records import Rows

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
"""Also how long stop() waits for an idle poll to return."""
MAX_RECORDS_PER_POLL = 1000
RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0)
"""Back-off between attempts to poll Kafka or write a poll while either fails; the last repeats,
so a database that comes back is written to within 2 s."""
LOOKUP_TIMEOUT_MS = 5000
"""How long one end-offset lookup may take, aiokafka's retries inside it included."""


def retry_delay(attempt: int) -> float:
    return RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]


class LogConsumer:
    """The events and snapshots topics (one partition each) read into the database."""

    def __init__(
        self, engine: AsyncEngine, bootstrap: str, events_topic: str, snapshots_topic: str
    ) -> None:
        self._engine = engine
        self._events_topic = events_topic
        self._events = TopicPartition(events_topic, 0)
        self._topics = (events_topic, snapshots_topic)
        self._kafka = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # Fewer, larger fetches: the broker answers at 64 KiB or after 50 ms, whichever is
            # first. The store lags the log by at most that (plus one write), which is also the
            # most a request waiting for freshness waits on it; it cut the store's CPU per order
            # by 75-85% in the end-to-end benchmark.
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=50,
            fetch_max_bytes=names.MAX_RECORD_BYTES,
            max_partition_fetch_bytes=names.MAX_RECORD_BYTES,
        )
        self._tracing = tracing_enabled()
        self._stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # Kafka records taken since start: after a restart, only those past the committed offset.
        self.records_seen = 0
        self.written = WrittenOffset()
        """How far into the events topic the database holds the log (store_svc.freshness)."""
        self.writes_failing = False
        """True while the last attempt to write a poll failed (the database is away)."""
        self._participants: set[str] = set()
        """Accounts whose orders and fills the reports keep (store_svc.records.Rows)."""

    async def start(self) -> None:
        await self._kafka.start()
        positions = await read_log_positions(self._engine)
        self._participants = await read_participants(self._engine)
        # One partition per topic by design (mockex.names): the log is totally ordered.
        partitions = [TopicPartition(topic, 0) for topic in self._topics]
        self._kafka.assign(partitions)
        for partition in partitions:
            next_offset = positions.get((partition.topic, partition.partition))
            if next_offset is None:
                await self._kafka.seek_to_beginning(partition)
            else:
                self._kafka.seek(partition, next_offset)
        self.written.advance(positions.get((self._events.topic, self._events.partition), 0))
        self.task = asyncio.create_task(self._run(), name="store-log-consumer")

    async def stop(self) -> None:
        """Finish the poll in hand (written with its positions, or not at all), then close."""
        self._stopping.set()
        if self.task is not None:
            try:
                await self.task
            except Exception:
                log.exception("store consumer had failed")
        await self._kafka.stop()

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                polled = await self._kafka.getmany(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS_PER_POLL
                )
            except KafkaError as exc:
                # A broker that went away mostly shows as empty polls while aiokafka reconnects;
                # errors it does raise (a fetch that failed for good) are retried the same way.
                delay = retry_delay(attempt)
                attempt += 1
                log.warning(
                    "store poll failed attempt=%d retry_in=%.1fs error=%r", attempt, delay, exc
                )
                if await self._stopped_within(delay):
                    return
                continue
            attempt = 0
            if polled:
                rows = Rows(participants=self._participants)
                for partition, records in polled.items():
                    for record in records:
                        self._add(rows, record)
                    topic_partition = (partition.topic, partition.partition)
                    rows.log_positions[topic_partition] = records[-1].offset + 1
                    self.records_seen += len(records)
                if not await self._write(rows):
                    return
                log.debug("store wrote rows=%d positions=%s", len(rows), rows.log_positions)
            await self._note_written()

    async def _note_written(self) -> None:
        """Everything below the consumer's position is written now (or skipped as unreadable).

        The position, not the last record's offset + 1: it also moves past offsets that hold no
        record to write (transaction markers, records gone by retention), which the log's end
        offset counts too.
        """
        try:
            position = await asyncio.wait_for(
                self._kafka.position(self._events), POLL_TIMEOUT_MS / 1000
            )
        except (TimeoutError, KafkaError):
            return  # being reset (a first start, an offset out of range): no news
        self.written.advance(position)

    async def _stopped_within(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    def _add(self, rows: Rows, record: ConsumerRecord) -> None:
        """A record's rows; an empty or unreadable record is logged and skipped, not retried.

        ValueError: an enum value this build does not know (a newer engine), which has no name.
        """
        try:
            if not record.value:
                raise DecodeError("empty record")
            if record.topic == self._events_topic:
                batch = engine_pb2.EngineBatch.FromString(record.value)
                if self._tracing and batch.command.trace_context:
                    # Ends the order's trace: gateway -> stream -> engine -> Kafka -> here.
                    with tracer("store_svc").start_as_current_span(
                        "store.record",
                        context=extract_context(batch.command.trace_context),
                        attributes={"kafka.offset": record.offset},
                    ):
                        rows.add_batch(batch, record.offset)
                else:
                    rows.add_batch(batch, record.offset)
            else:
                rows.add_snapshot(engine_pb2.EngineSnapshot.FromString(record.value), record.value)
        except (DecodeError, ValueError) as exc:
            log.error(
                "store skipped unreadable record topic=%s offset=%d error=%s",
                record.topic,
                record.offset,
                exc,
            )

    async def _write(self, rows: Rows) -> bool:
        """Write, retrying while the database is unavailable; False when stopped before it could."""
        attempt = 0
        while True:
            try:
                await write_rows(self._engine, rows)
            except DB_UNAVAILABLE as exc:
                self.writes_failing = True
                delay = retry_delay(attempt)
                attempt += 1
                log.warning(
                    "store write failed attempt=%d retry_in=%.1fs error=%s",
                    attempt,
                    delay,
                    getattr(exc, "orig", None) or exc,
                )
                if await self._stopped_within(delay):
                    return False
            else:
                if self.writes_failing:
                    log.info("store writes again after %d failed attempts", attempt)
                self.writes_failing = False
                return True


class LogEnd:
    """The events topic's end offset, asked of Kafka by a client of its own.

    Not the LogConsumer's client: its connection carries the long-polling fetches, and the broker
    answers one request per connection at a time, so a lookup there would queue behind a fetch.
    read_committed like the consumer, so the end is the last stable offset, which the consumer
    can reach.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._partition = TopicPartition(topic, 0)
        self._kafka = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=LOOKUP_TIMEOUT_MS,
        )

    async def start(self) -> None:
        await self._kafka.start()

    async def stop(self) -> None:
        await self._kafka.stop()

    async def end_offset(self) -> int:
        """The offset the next record will get; KafkaError when Kafka does not answer in time."""
        offsets = await self._kafka.end_offsets([self._partition])
        return offsets[self._partition]
