"""Read-your-writes for the store's answers: wait until the database holds the log as it stood
when the request arrived.

A request asks the log for its end offset, then waits until the consumer has written every record
below it. Lookups are shared, but only forwards in time: a lookup already in flight when a request
arrives may have been answered before that request's write reached the log, so the request waits
for the *next* lookup, which serves every request that arrived while it was pending. Kafka sees at
most one lookup at a time, however many requests there are, and a request waits at most about two
lookups (one finishing, one of its own) before it knows how far to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

CATCHING_UP = "order history is catching up with the exchange; retry shortly"
LOG_UNREACHABLE = "order history cannot reach the exchange's log right now; retry shortly"


class LogBehind(Exception):
    """The store cannot show the whole log in time; the message is for the participant."""


class EndOffsetLookups:
    """The log's end offset, from a lookup that started after the caller asked (see module doc)."""

    def __init__(self, lookup: Callable[[], Awaitable[int]], lookup_timeout_s: float) -> None:
        self._lookup = lookup
        self._lookup_timeout_s = lookup_timeout_s
        self._next: asyncio.Future[int] | None = None
        """What the callers waiting for the next lookup (not started yet) will get."""
        self._running: asyncio.Task[None] | None = None
        self.lookups_started = 0

    async def end_offset(self) -> int:
        """The end offset as of a moment after this call; the lookup's error if it failed."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        future = self._next
        if self._running is None:
            self._start_next()
        # Shielded: a caller that gives up (its deadline) must not cancel the others' lookup.
        return await asyncio.shield(future)

    def _start_next(self) -> None:
        future, self._next = self._next, None
        assert future is not None
        self.lookups_started += 1
        self._running = asyncio.create_task(self._run(future), name="store-end-offset-lookup")

    async def _run(self, future: asyncio.Future[int]) -> None:
        started = time.monotonic()
        try:
            offset = await asyncio.wait_for(self._lookup(), self._lookup_timeout_s)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            # Once per lookup, not per waiting request: an outage logs a line every few seconds.
            log.warning(
                "store end-offset lookup failed after %.1fs error=%r",
                time.monotonic() - started,
                exc,
            )
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(offset)
        finally:
            self._running = None
        # Everyone who arrived while this lookup was in flight gets the next one.
        if self._next is not None:
            self._start_next()

    async def close(self) -> None:
        """Cancel the lookup in flight and fail the callers waiting for the next one."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)


def _retrieve(future: asyncio.Future[int]) -> None:
    """Mark a lookup's error as seen, so one whose callers all gave up logs no asyncio warning."""
    if not future.cancelled():
        future.exception()


class WrittenOffset:
    """How far the database holds the log: every record below `value` is written."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def advance(self, offset: int) -> None:
        """Called by the consumer after each write; wakes those waiting for `offset` or less."""
        if offset <= self.value:
            return
        self.value = offset
        waiting = []
        for target, future in self._waiters:
            if target <= offset:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((target, future))
        self._waiters = waiting

    async def reached(self, offset: int) -> None:
        """Return once every record below `offset` is written."""
        if offset <= self.value:
            return
        waiter = (offset, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            # A caller that gave up leaves nothing behind while the consumer is stuck.
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise


class Freshness:
    """The wait every StoreService answer makes before it reads the database."""

    def __init__(self, lookups: EndOffsetLookups, written: WrittenOffset, timeout_s: float) -> None:
        self._lookups = lookups
        self._written = written
        self.timeout_s = timeout_s

    async def wait(self) -> None:
        """Return once the database holds the log as it stood at the call; LogBehind if it does
        not within `timeout_s`, so no caller ever gets an answer older than its own writes."""
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    end = await self._lookups.end_offset()
                except Exception as exc:  # the lookup's own failure, not our deadline
                    raise LogBehind(LOG_UNREACHABLE) from exc
                await self._written.reached(end)
        except TimeoutError as exc:
            raise LogBehind(CATCHING_UP) from exc
