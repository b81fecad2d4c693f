"""`make run` supervision with real processes: `python -m mockex.run` on free ports and a data
directory of its own restarts a killed child, takes its children with it when killed, stops
what an earlier run left behind, and names a busy port with the variable that moves it.

Every process is stopped by pid at the end (the `runs` fixture), never by name.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mockex import names, processes
from mockex.grpc_server import start_grpc_server
from mockex.processes import ManagedProcess
from mockex.settings import PORTS
from mockex.stack import ExchangeStack, StackPorts, group_sizes_from_env, service_of
from mockex.supervisor import Backoff, Supervisor
from tests.integration.exchange_client import Exchange, Participant
from tests.integration.test_crash import wait_engine_drained
from tests.integration.test_order_path import read_log

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


def connections_of(pid: int, port: int) -> int:
    """Established TCP connections that process `pid` accepted on `port`, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            # state 01 is ESTABLISHED; the local address is the server's side.
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) in inodes
        except OSError:
            continue
    return count


def own_channel(port: int, index: int) -> grpc.aio.Channel:
    """A channel with a TCP connection of its own (channels with equal arguments share one)."""
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1), ("test.n", index)]
    )


async def place_steadily(
    trader: Participant, symbol: str, acknowledged: list[str], stop: asyncio.Event, seed: int
) -> None:
    """Orders one after another, a little apart; ids of the acknowledged ones. A call the
    killed gateway took down with it is unanswered, and not retried (it is not an order the
    participant was told about)."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            side = rng.choice(("BUY", "SELL"))
            tif = rng.choice(("IOC", "GFD"))
            price = round(rng.randint(95, 105) * 0.5, 2)
            order = await trader.place(symbol, side, rng.randint(1, 5), price, tif=tif)
            acknowledged.append(order.order_id)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        await asyncio.sleep(0.02)


@pytest.fixture
def two_gateways(kafka_bootstrap: str, tmp_path: Path) -> Iterator[ExchangeStack]:
    """The engine, store, stream and two gateway processes sharing one port (no simulator, no
    edge: the test talks to the gateways' port)."""
    ports = StackPorts.free()
    ports.kafka = int(kafka_bootstrap.rsplit(":", 1)[1])
    stack = ExchangeStack(
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        ports=ports,
        topic_suffix=f".{uuid.uuid4().hex[:8]}",
        extra_env={"MOCKEX_RATE_LIMIT_PER_SECOND": "0"},
        group_sizes={"gateway": 2},
    )
    try:
        stack.start_infrastructure(kafka=False)
        for name in ("engine", "store", "stream", "gateway"):
            for child in stack.members(name):
                stack.start_service(child)
        yield stack
    finally:
        stack.stop()


async def test_two_gateways_share_a_port_and_one_killed_is_restarted_losing_no_order(
    two_gateways: ExchangeStack,
) -> None:
    stack = two_gateways
    port = stack.ports.gateway
    first, second = stack.processes["gateway"], stack.processes["gateway-2"]
    assert processes.port_holders(port) == {first.pid, second.pid}

    channels = [own_channel(port, index) for index in range(16)]
    try:
        exchange = Exchange(channels[0], ADMIN_KEY)
        symbol = await exchange.add_symbol()
        traders = []
        for channel in channels:
            created = await exchange.participant(cash=1_000_000, positions={symbol: 10_000})
            traders.append(Participant(channel, created.user_id, created.api_key))
        # Each trader's first order opens its channel's connection: the kernel spreads them.
        for trader in traders:
            await trader.place(symbol, "BUY", 1, 40.0)
        assert connections_of(first.pid, port) > 0 and connections_of(second.pid, port) > 0

        lines: list[str] = []
        supervisor = Supervisor(stack, Backoff(first=3.0), log=lines.append)
        supervisor.start()
        acknowledged: list[str] = []
        stop = asyncio.Event()
        try:
            flows = [
                asyncio.create_task(place_steadily(trader, symbol, acknowledged, stop, seed))
                for seed, trader in enumerate(traders)
            ]
            await asyncio.sleep(1.0)
            second.kill()
            # Within the restart's backoff the first gateway alone serves the port.
            assert processes.port_holders(port) == {first.pid}
            for index in range(4):
                async with own_channel(port, 100 + index) as fresh:
                    trader = Participant(fresh, traders[index].user_id, traders[index].api_key)
                    await trader.place(symbol, "SELL", 1, 60.0)
            await asyncio.get_running_loop().run_in_executor(
                None,
                wait_until,
                lambda: any(line.startswith("==> gateway-2 restarted") for line in lines),
                60,
                "gateway-2 restarted",
            )
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*flows)
            restarted = stack.processes["gateway-2"]
            assert processes.port_holders(port) == {first.pid, restarted.pid}
            assert lines[0].startswith("==> gateway-2 exited (code -9); restarting in 3.0s")
            assert supervisor.restarts == {"gateway-2": 1}

            await wait_engine_drained(stack)
            accepted: dict[str, int] = {}
            for batch in await read_log(stack):
                for event in batch.events:
                    kind = event.WhichOneof("event")
                    if kind in ("order_accepted", "order_rejected"):
                        order_id = getattr(event, kind).order.order_id
                        accepted[order_id] = accepted.get(order_id, 0) + 1
            assert len(acknowledged) > 50, "the flow should have placed a steady stream"
            assert len(set(acknowledged)) == len(acknowledged)
            assert [order_id for order_id in acknowledged if order_id not in accepted] == []
            assert {order_id: n for order_id, n in accepted.items() if n > 1} == {}
        finally:
            stop.set()
            supervisor.stop()
    finally:
        for channel in channels:
            await channel.close()


def test_a_foreign_process_on_a_shared_port_is_named(tmp_path: Path) -> None:
    """SO_REUSEPORT would let it take part of the gateways' connections unseen."""
    stack = ExchangeStack(
        data_dir=tmp_path, admin_key="", ports=StackPorts.free(), group_sizes={"gateway": 2}
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("127.0.0.1", stack.ports.gateway))
        foreign.listen()
        with pytest.raises(RuntimeError) as refused:
            stack.check_shared_ports("gateway")
    assert str(refused.value).startswith(
        f"port {stack.ports.gateway} (MOCKEX_GRPC_PORT) is also served by pid {os.getpid()} ("
    )
    assert str(refused.value).endswith(
        "not a process of this exchange: stop it or set MOCKEX_GRPC_PORT"
    )


def test_group_processes_are_named_after_their_service_and_sized_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOCKEX_GATEWAY_PROCESSES", "3")
    monkeypatch.delenv("MOCKEX_STREAM_PROCESSES", raising=False)
    sizes = group_sizes_from_env()
    assert sizes == {"gateway": 3, "stream": 1}
    stack = ExchangeStack(data_dir=tmp_path, admin_key="", group_sizes=sizes)
    assert stack.members("gateway") == ["gateway", "gateway-2", "gateway-3"]
    assert stack.members("engine") == ["engine"]
    assert [service_of(name) for name in ("gateway-3", "gateway", "engine-2")] == [
        "gateway",
        "gateway",
        "engine-2",
    ]
    assert stack.service_env()["MOCKEX_GATEWAY_PROCESSES"] == "3"
    monkeypatch.setenv("MOCKEX_STREAM_PROCESSES", "0")
    with pytest.raises(ValueError, match="MOCKEX_STREAM_PROCESSES=0 must be at least 1"):
        group_sizes_from_env()


async def test_a_grpc_port_is_shared_only_by_servers_that_all_ask_for_it(tmp_path: Path) -> None:
    def nothing(server: grpc.aio.Server) -> None:
        return None

    alone = await start_grpc_server("127.0.0.1:0", nothing, [])
    try:
        with pytest.raises(RuntimeError):
            await start_grpc_server(f"127.0.0.1:{alone.port}", nothing, [], share_port=True)
    finally:
        await alone.stop(0)
    own = tmp_path / "second.sock"
    first = await start_grpc_server("127.0.0.1:0", nothing, [], share_port=True)
    second = await start_grpc_server(
        f"127.0.0.1:{first.port}", nothing, [], share_port=True, process_address=f"unix:{own}"
    )
    try:
        assert processes.port_holders(first.port) == {os.getpid()}
        with pytest.raises(RuntimeError):
            await start_grpc_server(f"127.0.0.1:{first.port}", nothing, [])
        async with grpc.aio.insecure_channel(f"unix:{own}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await second.stop(0)
        await first.stop(0)
