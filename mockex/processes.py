"""Starting and stopping the exchange's real servers (Redis, Kafka, our services) as processes.

Used by `make run` (mockex.run) and by the integration tests, which start their own servers on
free loopback ports and stop them by pid.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from mockex import edge, names

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ManagedProcess:
    """A child process in its own process group, with its output in a log file."""

    echo_to_console = False
    """When set (by `make run`), every output line is also printed as `[name] line`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child or the echo thread
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE if self.echo_to_console else log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        if self.echo_to_console:
            threading.Thread(target=self._echo, args=(log,), daemon=True).start()
        else:
            log.close()
        return self

    def _echo(self, log) -> None:
        prefix = f"[{self.name}] ".encode()
        with log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.flush()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}:\n{self.tail()}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} did not open port {port} in {timeout}s; see {self.log_path}"
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, no goodbye: for crash tests."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


def start_redis(port: int, data_dir: Path) -> ManagedProcess:
    """redis-server with AOF off (Kafka is the durable copy) bound to loopback."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--client-output-buffer-limit",
        "pubsub 256mb 128mb 60",
    ]
    process = ManagedProcess("redis", argv, data_dir / "redis.log").start()
    process.wait_for_port(port, 10)
    return process


def start_kafka(
    port: int, controller_port: int, data_dir: Path, timeout: float = 90
) -> ManagedProcess:
    """A real single-node KRaft broker from the Maven Central jars (scripts/start-kafka.sh)."""
    argv = [
        "bash",
        str(REPO_ROOT / "scripts" / "start-kafka.sh"),
        str(port),
        str(controller_port),
        str(data_dir),
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess("kafka", argv, data_dir / "kafka.log").start()
    process.wait_for_port(port, timeout)
    return process


async def create_topics(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> None:
    """Create the topics (one partition each, replication 1, records up to MAX_RECORD_BYTES) if
    missing; wait until usable."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in topics if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=1,
                            replication_factor=1,
                            topic_configs={"max.message.bytes": str(names.MAX_RECORD_BYTES)},
                        )
                        for name in missing
                    ]
                )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def python_service(name: str, module: str, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """One of our services, `python -m module`, with its settings in `env`."""
    argv = [sys.executable, "-u", "-m", module]
    return ManagedProcess(name, argv, log_dir / f"{name}.log", env=env).start()


def start_envoy(config: edge.EdgeConfig, data_dir: Path, timeout: float = 30) -> ManagedProcess:
    """The participant edge: Envoy with envoy/envoy.yaml rendered into data_dir/edge.

    Ready when its admin interface says the server is LIVE, i.e. the listener is bound.
    """
    config_path = edge.write(config, data_dir / "edge")
    argv = [
        str(edge.envoy_binary()),
        "--config-path",
        str(config_path),
        # Several Envoys on one machine (make run, test modules): no shared-memory hot restart.
        "--disable-hot-restart",
        "--concurrency",
        str(config.workers),
        "--log-level",
        "warn",
    ]
    process = ManagedProcess("edge", argv, data_dir / "logs" / "edge.log").start()
    deadline = time.monotonic() + timeout
    ready_url = f"http://127.0.0.1:{config.admin_port}/ready"
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"edge exited; see {process.log_path}:\n{process.tail()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as answer:
                if answer.status == 200 and port_open(config.port):
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    process.stop()
    raise TimeoutError(f"edge not ready on {config.port} after {timeout}s:\n{process.tail()}")
