"""Keeping the exchange up: a child that exits is started again, with exponential backoff.

`make run` (mockex.run) supervises its ExchangeStack with this, and tests can too. Each child
has a watcher thread: it waits for the child to exit, waits out the backoff, then starts it
again with the stack's own start method (same data directory, same ports), which returns once
the child is healthy. A slow or failing restart holds up only its own watcher; a restart that
fails counts as another death and backs off further. Each process of a group that shares a port
(`gateway`, `gateway-2`: ExchangeStack.group_sizes) is a child of its own: while one restarts,
the others keep serving the port.

A restarted child is forked by its watcher thread, and PR_SET_PDEATHSIG (mockex.processes)
fires when the forking *thread* ends: so watchers live until stop() has stopped the children
(in order, services before Redis and Kafka), and only then end.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mockex.processes import ManagedProcess
from mockex.stack import SERVICES, ExchangeStack, service_of


@dataclass(frozen=True)
class Backoff:
    """Waits between restarts: `first`, doubling up to `maximum`, from `first` again once the
    child had stayed up `reset_after` seconds (so a rare crash restarts at once, a crash loop
    does not spin)."""

    first: float = 0.5
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th quick death in a row (1 is the first)."""
        return min(self.first * 2 ** min(failures - 1, 32), self.maximum)


def say(line: str) -> None:
    """One line on stdout, written whole: the children's echo threads write there too."""
    sys.stdout.buffer.write(line.encode() + b"\n")
    sys.stdout.flush()


def shown_path(path: Path) -> str:
    """The path relative to the current directory when under it (var/logs/engine.log)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Supervisor:
    """Restarts the children of an ExchangeStack that exit, until stop()."""

    def __init__(
        self,
        stack: ExchangeStack,
        backoff: Backoff | None = None,
        log: Callable[[str], None] = say,
    ) -> None:
        self.stack = stack
        self.backoff = backoff or Backoff()
        self.log = log
        self.restarts: dict[str, int] = {}
        """Restarts attempted per child, for the log lines and for tests."""
        self._stopping = threading.Event()
        """Set by stop(): no more restarts."""
        self._done = threading.Event()
        """Set by stop() once the children are stopped: the watcher threads may end."""
        self._threads: list[threading.Thread] = []

    def starter(self, name: str) -> Callable[[], ManagedProcess] | None:
        """The stack's start method for the child `name`; None for children it cannot start."""
        if service_of(name) in SERVICES:
            # Up is enough: a service restarted while a dependency is still away heals by itself.
            # A process of a group (gateway-2) comes back on its own while the others serve.
            return lambda: self.stack.start_service(name, ready=False)
        return {
            "redis": self.stack.start_redis,
            "kafka": self.stack.start_kafka,
            "edge": self.stack.start_edge,
        }.get(name)

    def start(self) -> None:
        """Watch every child the stack has started (and knows how to start again)."""
        for name in list(self.stack.processes):
            starter = self.starter(name)
            if starter is None:
                continue
            thread = threading.Thread(
                target=self._watch, args=(name, starter), name=f"supervise-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop restarting, then stop every child (SIGTERM, then SIGKILL), services first."""
        self._stopping.set()
        self.stack.stop()
        self._done.set()
        for thread in self._threads:
            thread.join(timeout)
        self.stack.stop()  # a child a restart registered while the first stop() ran

    def _watch(self, name: str, starter: Callable[[], ManagedProcess]) -> None:
        """Restart `name` whenever it exits, until stop(); then live on until the children are
        stopped (a child this thread started dies with it)."""
        self._restart_while_running(name, starter)
        self._done.wait()

    def _restart_while_running(self, name: str, starter: Callable[[], ManagedProcess]) -> None:
        failures = 0
        while True:
            process = self.stack.processes.get(name)
            if process is None:
                return
            while process.alive():
                if self._stopping.wait(0.2):
                    return
            if self._stopping.is_set():
                return
            stayed_up = time.monotonic() - process.started_at >= self.backoff.reset_after
            failures = 1 if stayed_up else failures + 1
            reason = f"exited (code {process.returncode})"
            while True:
                delay = self.backoff.delay(failures)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.log(
                    f"==> {name} {reason}; restarting in {delay:.1f}s "
                    f"(restart {self.restarts[name]}, log: {shown_path(process.log_path)})"
                )
                if self._stopping.wait(delay):
                    return
                try:
                    restarted = starter()
                except Exception as exc:
                    if self._stopping.is_set():
                        return
                    failures += 1
                    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                    reason = f"did not start ({first_line})"
                    continue
                self.log(f"==> {name} restarted (pid {restarted.pid})")
                break
