"""store_svc.health: readiness follows the dependencies, and a hung check never piles up."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health, health_pb2

from store_svc.health import READINESS, Probe, Readiness

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def readiness_status(servicer: health.aio.HealthServicer) -> int:
    answer = await servicer.Check(health_pb2.HealthCheckRequest(service=READINESS), None)
    return answer.status


class Dependency:
    """A check that answers, fails or hangs as the test says, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.hold: asyncio.Event | None = None

    async def check(self) -> None:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error


async def test_readiness_goes_not_serving_while_a_dependency_fails_and_back_by_itself():
    servicer = health.aio.HealthServicer()
    log, failing_writes = Dependency(), [False]
    readiness = Readiness(
        servicer, [Probe("the log", log.check)], lambda: failing_writes[0], check_timeout_s=0.05
    )
    assert await readiness.check() == []
    assert await readiness_status(servicer) == SERVING

    log.error = ConnectionError("refused")
    assert await readiness.check() == ["the log: ConnectionError('refused')"]
    assert await readiness_status(servicer) == NOT_SERVING

    log.error = None
    failing_writes[0] = True
    assert await readiness.check() == ["database writes are failing"]
    failing_writes[0] = False
    assert await readiness.check() == []
    assert await readiness_status(servicer) == SERVING


async def test_a_hung_check_fails_after_the_timeout_and_is_not_started_twice():
    servicer = health.aio.HealthServicer()
    database = Dependency()
    database.hold = asyncio.Event()
    readiness = Readiness(
        servicer, [Probe("the database", database.check)], lambda: False, check_timeout_s=0.05
    )
    assert await readiness.check() == ["the database did not answer in 0.05s"]
    assert await readiness.check() == ["the database did not answer in 0.05s"]
    assert database.calls == 1
    assert await readiness_status(servicer) == NOT_SERVING

    database.hold.set()  # the server came back (SIGCONT)
    assert await readiness.check() == []
    assert await readiness_status(servicer) == SERVING
    await readiness.stop()
