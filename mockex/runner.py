"""The one way every service process runs: logging, tracing, signals, start, serve, stop.

A service app has `start()`, `wait()` (returns or raises only when the service fails on its
own) and `stop()`. SIGTERM or SIGINT stops it gracefully; a failure of `wait` stops it too and
ends the process with an error, so the supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
from collections.abc import Callable
from typing import Protocol

from mockex.telemetry import setup_tracing

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
QUIETED_LIBRARIES = ("aiokafka", "kafka")
"""Client libraries that log the same line many times a second while a broker is away."""
REPEAT_EVERY_SECONDS = 10.0


class RepeatLimiter(logging.Filter):
    """Lets a library's line (by logger and message template) through once per `every` seconds
    and counts what it held back, so an outage is a few lines in the log, not thousands."""

    def __init__(self, prefixes: tuple[str, ...], every: float) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._every = every
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, str(record.msg))
        last, held = self._last.get(key, (float("-inf"), 0))
        if record.created - last < self._every:
            self._last[key] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in {self._every:g}s)"
        self._last[key] = (record.created, 0)
        return True


class HideUndecodableMetadata(logging.Filter):
    """grpcio logs a metadata value that is not UTF-8 whole, at ERROR with a traceback ("Invalid
    encoding on b'...'"): an `x-api-key` with one bad byte put the rest of a participant's key in
    the gateway's log. The line stays, without the value."""

    LOGGER = "grpc._cython.cygrpc"
    TEMPLATE = "Invalid encoding on %s"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self.LOGGER and record.msg == self.TEMPLATE:
            record.msg = "a gRPC metadata value is not UTF-8 (not logged: it may be an API key)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


class ServiceApp(Protocol):
    async def start(self) -> None: ...

    async def wait(self) -> None: ...

    async def stop(self) -> None: ...


def run_service(name: str, make_app: Callable[[], ServiceApp]) -> None:
    """Run the service until a signal or its own failure (then exit with status 1)."""
    faulthandler.enable()  # a crash in a C extension still leaves its Python stack in the log
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    limiter = RepeatLimiter(QUIETED_LIBRARIES, REPEAT_EVERY_SECONDS)
    for handler in logging.getLogger().handlers:
        handler.addFilter(HideUndecodableMetadata())
        handler.addFilter(limiter)
    setup_tracing(name)
    asyncio.run(_serve(name, make_app))


async def _serve(name: str, make_app: Callable[[], ServiceApp]) -> None:
    log = logging.getLogger(name)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    app = make_app()
    try:
        starting = asyncio.create_task(app.start())
        stopper = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("%s stopping before it finished starting", name)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()
        waiter = asyncio.create_task(app.wait())
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            stopper.cancel()
            waiter.result()  # a failure ends the process with its traceback
            raise RuntimeError(f"{name} stopped on its own")
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        log.info("%s stopping", name)
    finally:
        await app.stop()
        log.info("%s stopped", name)
