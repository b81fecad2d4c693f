"""`make run` supervision with real processes: `python -m mockex.run` on free ports and a data
directory of its own restarts a killed child, takes its children with it when killed, stops
what an earlier run left behind, and names a busy port with the variable that moves it.

Every process is stopped by pid at the end (the `runs` fixture), never by name.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mockex import names, processes
from mockex.processes import ManagedProcess
from mockex.settings import PORTS
from mockex.stack import ExchangeStack, StackPorts
from mockex.supervisor import Backoff, Supervisor

pytestmark = pytest.mark.integration

ADMIN_KEY = "mx_supervisor_test"
BANNER = "Mockex is up"
UP_TIMEOUT = 90.0


@dataclass
class Run:
    """One `python -m mockex.run`, its output in a file."""

    process: subprocess.Popen
    data_dir: Path
    ports: StackPorts
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = UP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {needle!r} in the output of mockex.run:\n{self.text()[-4000:]}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"mockex.run still running:\n{self.text()[-4000:]}") from None

    def pid_files(self) -> dict[str, int]:
        """Child name -> pid, from <data>/run/<name>.pid."""
        found = {}
        for path in (self.data_dir / "run").glob("*.pid"):
            recorded = processes.read_pid_file(path)
            if recorded is not None:
                found[path.stem] = recorded[0]
        return found


@dataclass
class Runs:
    """Starts runs; at the end kills each supervisor (its children die with it) and stops, by
    pid, any child a pid file still names."""

    tmp_path: Path
    started: list[Run] = field(default_factory=list)

    def start(self, data_dir: Path, ports: StackPorts, label: str = "run") -> Run:
        env = {
            **os.environ,
            **{PORTS[name].variable: str(port) for name, port in vars(ports).items()},
            "MOCKEX_DATA_DIR": str(data_dir),
            "MOCKEX_ADMIN_KEY": ADMIN_KEY,
        }
        output = self.tmp_path / f"{label}.out"
        with open(output, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-u", "-m", "mockex.run"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=processes.REPO_ROOT,
                env=env,
                start_new_session=True,
            )
        run = Run(process, data_dir, ports, output)
        self.started.append(run)
        return run

    def cleanup(self) -> None:
        for run in self.started:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
            for path in (run.data_dir / "run").glob("*.pid"):
                pid = processes.live_pid(path)
                if pid is not None:
                    processes.stop_pid(pid, timeout=5)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    started = Runs(tmp_path)
    yield started
    started.cleanup()


def alive_of(pids: set[int]) -> list[str]:
    """Live (not zombie) processes whose pid or process group is one of `pids`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        group = processes.process_group(pid)
        if (pid in pids or group in pids) and processes.process_start_time(pid) is not None:
            found.append(f"{pid} (group {group}): {processes.process_command(pid)[:100]}")
    return found


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING


def topic_settings(bootstrap: str, topic: str) -> dict[str, str]:
    async def describe() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
        finally:
            await admin.close()
        return {
            entry[0]: entry[1]
            for response in responses
            for resource in response.resources
            for entry in resource[4]
        }

    loop = asyncio.new_event_loop()  # its own: the session loop of pytest-asyncio stays as it is
    try:
        return loop.run_until_complete(describe())
    finally:
        loop.close()


def test_run_restarts_a_killed_service_and_its_children_die_with_it(
    runs: Runs, tmp_path: Path
) -> None:
    ports = StackPorts.free()
    run = runs.start(tmp_path / "data", ports)
    run.wait_for(BANNER)
    text = run.text()
    assert f"REST/gRPC-Web: http://localhost:{ports.edge}\n" in text
    assert f"gRPC (all services, reflection on): 127.0.0.1:{ports.gateway}\n" in text
    assert f"Redis redis://:***@127.0.0.1:{ports.redis}/0   Kafka 127.0.0.1:{ports.kafka}" in text
    # The Redis password is kept like the admin key, the user's alone, and never printed.
    password_file = run.data_dir / "redis-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert run.data_dir.stat().st_mode & 0o777 == 0o700
    assert password_file.read_text().strip() not in text
    assert processes.port_open(ports.edge) and serving(ports.gateway)
    children = run.pid_files()
    assert set(children) == {
        "redis", "kafka", "engine", "store", "stream", "gateway", "data", "edge",
    }  # fmt: skip
    # A first run plays the default scenario.
    assert "simulator: default RUNNING, round 1; symbols ACME, GLOBX, INITECH, UMBRA\n" in text

    # The engine's log is kept forever and fsynced; snapshots keep Kafka's default.
    bootstrap = f"127.0.0.1:{ports.kafka}"
    assert topic_settings(bootstrap, names.EVENTS_TOPIC)["retention.ms"] == "-1"
    assert topic_settings(bootstrap, names.EVENTS_TOPIC)["flush.messages"] == "1"
    assert topic_settings(bootstrap, names.SNAPSHOTS_TOPIC)["retention.ms"] != "-1"

    # A second supervisor on the same data directory refuses to start...
    same_dir = runs.start(run.data_dir, StackPorts.free(), label="same-dir")
    assert same_dir.wait_exit(15) != 0
    assert f"error: Mockex is already running on {run.data_dir} (pid {run.process.pid})" in (
        same_dir.text()
    )
    # ...and one on the same ports names each busy port, its variable and its holder.
    same_ports = runs.start(tmp_path / "other", ports, label="same-ports")
    assert same_ports.wait_exit(15) != 0
    edge_line = next(
        line for line in same_ports.text().splitlines() if f"port {ports.edge} " in line
    )
    assert edge_line.startswith(
        f"error: port {ports.edge} (MOCKEX_HTTP_PORT) is in use by pid {children['edge']} ("
    )
    assert edge_line.endswith("is Mockex already running? stop it or set MOCKEX_HTTP_PORT")
    assert same_ports.pid_files() == {}

    # kill -9 the engine: restarted, in the same place, SERVING again.
    os.kill(children["engine"], signal.SIGKILL)
    run.wait_for("==> engine exited (code -9); restarting in 0.5s (restart 1, log: ", 10)
    run.wait_for("==> engine restarted (pid ", 60)
    engine = run.pid_files()["engine"]
    assert engine != children["engine"]
    wait_until(lambda: serving(ports.engine), 10, "the restarted engine SERVING")
    wait_until(lambda: serving(ports.gateway), 15, "the gateway SERVING with the new engine")
    assert run.process.poll() is None

    # SIGKILL of the supervisor: every child and its process group go too.
    children = run.pid_files()
    groups = {processes.process_group(pid) for pid in children.values()} - {None}
    everything = set(children.values()) | groups
    run.process.kill()
    run.process.wait()
    deadline = time.monotonic() + 5
    while alive_of(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive_of(everything) == []


def test_run_stops_what_an_earlier_run_left_and_stops_everything_on_sigterm(
    runs: Runs, tmp_path: Path
) -> None:
    ports = StackPorts.free()
    data_dir = tmp_path / "data"
    run_dir = data_dir / "run"
    # A Redis an earlier run left behind on its port, with its pid file...
    orphan = subprocess.Popen(
        ["redis-server", "--port", str(ports.redis), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: processes.port_open(ports.redis), 10, "the orphan Redis up")
        processes.write_pid_file(run_dir / "redis.pid", orphan.pid)
        # ...and a pid file whose pid now belongs to another process (this one): not ours.
        run_dir.joinpath("engine.pid").write_text(f"{os.getpid()} 1\n")

        run = runs.start(data_dir, ports)
        run.wait_for(BANNER)
        text = run.text()
        assert (
            f"==> stopping redis (pid {orphan.pid}), left running by an earlier run of {data_dir}"
        ) in text
        assert "==> stopping engine" not in text
        assert orphan.wait(5) is not None
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()

    children = run.pid_files()
    assert children["redis"] != orphan.pid and serving(ports.gateway)
    run.process.send_signal(signal.SIGTERM)
    assert run.wait_exit(60) == 0
    assert "==> SIGTERM received\n" in run.text() and "==> stopping\n" in run.text()
    assert alive_of(set(children.values())) == []
    assert run.pid_files() == {}


def test_run_names_a_busy_port_its_variable_and_its_holder(runs: Runs, tmp_path: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.edge))
        busy.listen()
        run = runs.start(tmp_path / "data", ports)
        assert run.wait_exit(30) != 0
    output = run.text().strip()
    assert output.startswith(
        f"error: port {ports.edge} (MOCKEX_HTTP_PORT) is in use by pid {os.getpid()} ("
    )
    assert output.endswith("stop it or set MOCKEX_HTTP_PORT")
    assert "==> starting" not in output and run.pid_files() == {}


def test_run_refuses_kafka_data_formatted_for_other_ports(runs: Runs, tmp_path: Path) -> None:
    ports = StackPorts.free()
    kafka_dir = tmp_path / "data" / "kafka"
    kafka_dir.mkdir(parents=True)
    kafka_dir.joinpath("server.properties").write_text(
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n"
    )
    run = runs.start(tmp_path / "data", ports)
    assert run.wait_exit(30) != 0
    output = run.text()
    assert (
        f"error: the Kafka data in {kafka_dir} was formatted for ports 9092 and 9093, not "
        f"{ports.kafka} and {ports.kafka_controller}: set MOCKEX_KAFKA_PORT=9092 "
        "MOCKEX_KAFKA_CONTROLLER_PORT=9093, or delete"
    ) in output
    assert "==> starting" not in output


class SleepingStack(ExchangeStack):
    """An ExchangeStack whose engine is `sleep`: the supervisor's restarts in a second, without
    Redis or Kafka. The first `failures` restarts fail."""

    def __init__(self, data_dir: Path, failures: int) -> None:
        super().__init__(data_dir=data_dir, admin_key="")
        self.failures = failures

    def start_service(self, name: str, timeout: float = 60, ready: bool = True) -> ManagedProcess:
        process = ManagedProcess(name, ["sleep", "600"], self.data_dir / "logs" / f"{name}.log")
        launched = self._launch(process, lambda: None)
        if self.failures > 0:
            self.failures -= 1
            launched.stop()
            raise RuntimeError("not today\nsecond line")
        return launched


def test_supervisor_backs_off_a_restart_that_fails_and_stops_its_children(
    tmp_path: Path,
) -> None:
    stack = SleepingStack(tmp_path, failures=0)
    first = stack.start_service("engine")
    lines: list[str] = []
    supervisor = Supervisor(stack, Backoff(first=0.1, maximum=0.3), log=lines.append)
    supervisor.start()
    try:
        stack.failures = 2
        first.kill()
        wait_until(lambda: any("restarted" in line for line in lines), 10, "a restart")
        log = f"log: {tmp_path / 'logs' / 'engine.log'})"
        assert lines == [
            f"==> engine exited (code -9); restarting in 0.1s (restart 1, {log}",
            f"==> engine did not start (not today); restarting in 0.2s (restart 2, {log}",
            f"==> engine did not start (not today); restarting in 0.3s (restart 3, {log}",
            f"==> engine restarted (pid {stack.processes['engine'].pid})",
        ]
        restarted = stack.processes["engine"]
        assert restarted.alive()
        assert processes.live_pid(tmp_path / "run" / "engine.pid") == restarted.pid
    finally:
        supervisor.stop()
    assert not restarted.alive()
    assert not (tmp_path / "run" / "engine.pid").exists()
