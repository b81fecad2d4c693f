"""Readiness of store_svc, answered by the standard gRPC health service.

Service "" (readiness) is SERVING only while the store reaches both the log and its database, so
callers and load balancers can route around a store that cannot answer fresh. Service "liveness"
stays SERVING while the process runs: Kafka or the database being away is not a reason to restart
the store, which carries on by itself once they are back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

READINESS = ""
CHECK_INTERVAL_S = 1.0
CHECK_TIMEOUT_S = 2.0
"""A dependency that does not answer a check in this long (a SIGSTOPped server) is away."""


class Probe:
    """One dependency check, at most one in flight.

    A check that hangs counts as failed after the timeout but is left to finish (cancelling a
    database call midway can itself hang), and no second one starts until it has: hung checks
    never pile up.
    """

    def __init__(self, name: str, check: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self._check = check
        self._task: asyncio.Task[object] | None = None

    async def problem(self, timeout_s: float) -> str | None:
        """None when the dependency answered; else why not, for the log."""
        if self._task is None:
            self._task = asyncio.create_task(self._check(), name=f"store-probe-{self.name}")
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            return f"{self.name} did not answer in {timeout_s:g}s"
        task, self._task = self._task, None
        if task.cancelled():
            return f"{self.name} check was cancelled"
        error = task.exception()
        return None if error is None else f"{self.name}: {error!r}"

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Readiness:
    """Checks the dependencies every `interval_s` and sets service "" to match."""

    def __init__(
        self,
        health_servicer: health.aio.HealthServicer,
        probes: list[Probe],
        writes_failing: Callable[[], bool],
        interval_s: float = CHECK_INTERVAL_S,
        check_timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._health = health_servicer
        self._probes = probes
        self._writes_failing = writes_failing
        self._interval_s = interval_s
        self._check_timeout_s = check_timeout_s
        self.serving: bool | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """One check now, so the first answer is already true, then one every interval."""
        await self.check()
        self.task = asyncio.create_task(self._watch(), name="store-readiness")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        for probe in self._probes:
            probe.cancel()

    async def check(self) -> list[str]:
        """Check every dependency at once; set readiness on a change, with a log line."""
        found = await asyncio.gather(
            *(probe.problem(self._check_timeout_s) for probe in self._probes)
        )
        problems = [problem for problem in found if problem is not None]
        if self._writes_failing():
            problems.append("database writes are failing")
        serving = not problems
        if serving != self.serving:
            status = health_pb2.HealthCheckResponse
            await self._health.set(READINESS, status.SERVING if serving else status.NOT_SERVING)
            if serving:
                log.info("store ready: SERVING")
            else:
                log.warning("store not ready: NOT_SERVING (%s)", "; ".join(problems))
            self.serving = serving
        return problems

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()
