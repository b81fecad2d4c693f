"""store_svc.freshness: the coalescing of end-offset lookups and the bounded wait, with the
lookup injected (no Kafka)."""

from __future__ import annotations

import asyncio
import time

import pytest

from store_svc.freshness import (
    CATCHING_UP,
    LOG_UNREACHABLE,
    EndOffsetLookups,
    Freshness,
    LogBehind,
    WrittenOffset,
)


class HeldLookups:
    """A lookup function whose calls wait until the test answers them, in call order."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[int]] = []

    async def __call__(self) -> int:
        call: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.calls.append(call)
        return await call

    def answer(self, index: int, offset: int) -> None:
        self.calls[index].set_result(offset)

    def fail(self, index: int, error: Exception) -> None:
        self.calls[index].set_exception(error)


async def settle() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


def asking(lookups: EndOffsetLookups) -> asyncio.Task[int]:
    return asyncio.create_task(lookups.end_offset())


async def test_a_request_never_uses_a_lookup_already_in_flight_but_shares_the_next_one():
    held = HeldLookups()
    lookups = EndOffsetLookups(held, lookup_timeout_s=10)

    first = asking(lookups)
    await settle()
    assert len(held.calls) == 1  # the first request started a lookup at once

    # Three requests arrive while it is in flight: the answer it gets may predate their writes.
    during = [asking(lookups) for _ in range(3)]
    await settle()
    assert len(held.calls) == 1  # no second lookup while one is in flight

    held.answer(0, 10)
    await settle()
    assert first.done() and first.result() == 10
    assert not any(task.done() for task in during)
    assert len(held.calls) == 2  # the next lookup started as soon as the first ended

    # One more arrives while the second is in flight: it gets a third lookup, not the second.
    late = asking(lookups)
    await settle()
    held.answer(1, 12)
    await settle()
    assert [task.result() for task in during] == [12, 12, 12]
    assert not late.done()

    held.answer(2, 13)
    assert await late == 13
    assert lookups.lookups_started == 3


async def test_no_lookup_runs_while_nobody_waits():
    held = HeldLookups()
    lookups = EndOffsetLookups(held, lookup_timeout_s=10)
    request = asking(lookups)
    await settle()
    held.answer(0, 5)
    assert await request == 5
    await settle()
    assert len(held.calls) == 1


async def test_a_failed_lookup_fails_its_own_requests_only():
    held = HeldLookups()
    lookups = EndOffsetLookups(held, lookup_timeout_s=10)
    first = asking(lookups)
    await settle()
    second = asking(lookups)
    await settle()

    held.fail(0, ConnectionError("broker went away"))
    await settle()
    with pytest.raises(ConnectionError):
        await first
    assert not second.done()

    held.answer(1, 7)
    assert await second == 7


async def test_a_request_that_gives_up_does_not_cancel_the_lookup_others_wait_for():
    held = HeldLookups()
    lookups = EndOffsetLookups(held, lookup_timeout_s=10)
    first = asking(lookups)
    await settle()
    impatient, patient = asking(lookups), asking(lookups)  # both wait for the second lookup
    await settle()
    impatient.cancel()
    held.answer(0, 2)
    await settle()
    assert await first == 2
    held.answer(1, 3)
    assert await patient == 3
    assert impatient.cancelled()


async def test_a_hung_lookup_times_out_and_the_next_one_starts():
    held = HeldLookups()
    lookups = EndOffsetLookups(held, lookup_timeout_s=0.05)
    first = asking(lookups)
    await settle()
    second = asking(lookups)
    with pytest.raises(TimeoutError):
        await first
    await settle()
    assert len(held.calls) == 2
    held.answer(1, 4)
    assert await second == 4


async def test_written_offset_wakes_only_the_requests_it_covers():
    written = WrittenOffset(5)
    await written.reached(5)  # everything below 5 is written already: no wait

    to_8 = asyncio.create_task(written.reached(8))
    to_9 = asyncio.create_task(written.reached(9))
    await settle()
    written.advance(8)
    await settle()
    assert to_8.done() and not to_9.done()

    written.advance(7)  # never backwards
    assert written.value == 8
    written.advance(20)
    await asyncio.wait_for(to_9, 1)


async def test_a_request_that_gives_up_leaves_no_waiter_behind():
    written = WrittenOffset(0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(written.reached(3), 0.01)
    assert written._waiters == []


async def test_freshness_returns_once_the_log_end_is_written():
    written = WrittenOffset(2)
    freshness = Freshness(EndOffsetLookups(lambda: _value(6), 10), written, timeout_s=5)
    waiting = asyncio.create_task(freshness.wait())
    await settle()
    written.advance(5)
    await settle()
    assert not waiting.done()  # offset 5 (the log's last record) is not written yet
    written.advance(6)
    await asyncio.wait_for(waiting, 1)


async def test_freshness_answers_catching_up_within_the_bound_never_a_stale_answer():
    freshness = Freshness(EndOffsetLookups(lambda: _value(6), 10), WrittenOffset(2), timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(LogBehind) as behind:
        await freshness.wait()
    assert 0.2 <= time.monotonic() - started < 1.0
    assert str(behind.value) == CATCHING_UP


async def test_freshness_answers_unreachable_when_the_lookup_fails():
    async def broker_down() -> int:
        raise ConnectionError("connection refused")

    freshness = Freshness(EndOffsetLookups(broker_down, 10), WrittenOffset(0), timeout_s=1)
    with pytest.raises(LogBehind) as behind:
        await freshness.wait()
    assert str(behind.value) == LOG_UNREACHABLE


async def _value(offset: int) -> int:
    return offset
