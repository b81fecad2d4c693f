"""Reads the engine's log from its start into the simulator's `ExchangeState`, then follows it.

No consumer group and no stored position: the state is a fold of the whole log, so every start
reads it again (progress is logged while it catches up). Kafka going away is ridden out:
aiokafka reconnects, a failed poll is retried with back-off.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from data_svc.market import ExchangeState
from exchange.internal.v1 import engine_pb2
from mockex import names

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
MAX_RECORDS_PER_POLL = 2000
RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0)
PROGRESS_EVERY_S = 5.0


class LogFollower:
    def __init__(self, state: ExchangeState, bootstrap: str, topic: str) -> None:
        self.state = state
        self._partition = TopicPartition(topic, 0)
        self._kafka = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # The bots read their own fills here: a short wait keeps their view fresh.
            fetch_max_wait_ms=20,
            fetch_max_bytes=names.MAX_RECORD_BYTES,
            max_partition_fetch_bytes=names.MAX_RECORD_BYTES,
        )
        self._stopping = asyncio.Event()
        self.caught_up = asyncio.Event()
        """Set once the state holds the log as it stood when the follower started."""
        self.task: asyncio.Task[None] | None = None
        self.records = 0

    async def start(self) -> None:
        await self._kafka.start()
        self._kafka.assign([self._partition])
        await self._kafka.seek_to_beginning(self._partition)
        self.task = asyncio.create_task(self._run(), name="data-log-follower")

    async def stop(self) -> None:
        self._stopping.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self._kafka.stop()

    async def _end_offset(self) -> int:
        while True:
            try:
                ends = await self._kafka.end_offsets([self._partition])
                return ends[self._partition]
            except KafkaError as exc:
                log.warning("log end offset unknown yet (%r); asking again", exc)
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        target = await self._end_offset()
        started = last_progress = time.monotonic()
        if target == 0:
            self.caught_up.set()
        attempt = 0
        while not self._stopping.is_set():
            try:
                polled = await self._kafka.getmany(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS_PER_POLL
                )
            except KafkaError as exc:
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                attempt += 1
                log.warning(
                    "log poll failed attempt=%d retry_in=%.1fs error=%r", attempt, delay, exc
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            for records in polled.values():
                for record in records:
                    self._apply(record.value, record.offset)
            if not self.caught_up.is_set():
                # The position, not the last record: transaction markers count in the end.
                if await self._position() >= target:
                    self.caught_up.set()
                    log.info(
                        "log read: %d records in %.1fs, following it",
                        self.records,
                        time.monotonic() - started,
                    )
                elif time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    log.info("reading the log: %d of %d records", self.state.next_offset, target)

    async def _position(self) -> int:
        try:
            return await asyncio.wait_for(self._kafka.position(self._partition), 1.0)
        except (TimeoutError, KafkaError):
            return -1

    def _apply(self, value: bytes | None, offset: int) -> None:
        self.records += 1
        try:
            batch = engine_pb2.EngineBatch.FromString(value or b"")
        except (DecodeError, ValueError) as exc:
            log.error("skipped an unreadable log record offset=%d error=%s", offset, exc)
            self.state.next_offset = offset + 1
            return
        self.state.apply(batch, offset)
