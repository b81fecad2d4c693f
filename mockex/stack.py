"""The whole exchange as processes: Redis, Kafka, and the services, wired by environment.

One definition serves `make run` (ports from the environment, StackPorts.from_env, data under
var/) and the integration tests (free ports, temporary directories), so what the tests start is
what participants get. mockex.supervisor restarts a child with the same start method.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mockex import edge, names, processes, settings
from mockex.grpc_server import LIVENESS
from mockex.private import new_password, private_dir
from mockex.settings import PORTS, redis_url_for

SERVICES = ("engine", "store", "stream", "gateway", "data")
"""In start order: data_svc (the simulator) trades through the gateway."""
GROUP_VARIABLES = {"gateway": "MOCKEX_GATEWAY_PROCESSES", "stream": "MOCKEX_STREAM_PROCESSES"}
"""Services that may run as several processes sharing their ports (SO_REUSEPORT), and the
variable that says how many (1, the default: one process, its port not shareable)."""
SHARED_PORTS = {"gateway": ("gateway",), "stream": ("stream", "stream_ws")}
"""The StackPorts a group's processes share."""
MAX_SOCKET_PATH = 100
"""A Unix socket path longer than this (Linux allows 107 bytes) becomes a loopback port."""


def group_sizes_from_env() -> dict[str, int]:
    """Processes per service from MOCKEX_GATEWAY_PROCESSES and MOCKEX_STREAM_PROCESSES."""
    sizes = {}
    for name, variable in GROUP_VARIABLES.items():
        size = settings.env_int(variable, 1)
        if size < 1:
            raise ValueError(f"{variable}={size} must be at least 1")
        sizes[name] = size
    return sizes


def service_of(child: str) -> str:
    """The service a child runs: `gateway-2`, the second gateway process, runs `gateway`."""
    service, _, number = child.rpartition("-")
    return service if service in GROUP_VARIABLES and number.isdigit() else child


@dataclass
class StackPorts:
    """Every port of one exchange; names, environment variables and defaults: settings.PORTS."""

    redis: int = PORTS["redis"].default
    kafka: int = PORTS["kafka"].default
    kafka_controller: int = PORTS["kafka_controller"].default
    gateway: int = PORTS["gateway"].default
    engine: int = PORTS["engine"].default
    stream: int = PORTS["stream"].default
    store: int = PORTS["store"].default
    edge: int = PORTS["edge"].default
    """Envoy: REST/JSON, gRPC-Web and /ws/ for participants (SPEC.md section 3)."""
    edge_admin: int = PORTS["edge_admin"].default
    """Envoy's admin interface (stats, /ready), loopback only."""
    stream_ws: int = PORTS["stream_ws"].default
    """stream_svc's WebSocket server, behind the edge's /ws/ paths."""
    data: int = PORTS["data"].default
    """data_svc, the simulator (its gRPC: scenario loading for the admin API)."""

    @classmethod
    def free(cls) -> StackPorts:
        names = [port.name for port in fields(cls)]
        return cls(**dict(zip(names, processes.free_ports(len(names)), strict=True)))

    @classmethod
    def from_env(cls) -> StackPorts:
        """The ports `make run` binds: MOCKEX_HTTP_PORT, MOCKEX_GRPC_PORT, ... (settings.PORTS)."""
        return cls(**{port.name: settings.port(port.name) for port in fields(cls)})


@dataclass
class ExchangeStack:
    data_dir: Path
    admin_key: str
    ports: StackPorts = field(default_factory=StackPorts)
    extra_env: dict[str, str] = field(default_factory=dict)
    topic_suffix: str = ""
    """Appended to topic names, so tests can share one broker."""
    scenario: str = ""
    """The simulator's scenario for an exchange whose log has none yet ("": the simulator
    waits for an organizer to load one)."""
    processes: dict[str, processes.ManagedProcess] = field(default_factory=dict)
    """Every running child by name; a restart (mockex.supervisor) replaces its entry."""
    redis_password: str = field(default_factory=new_password, repr=False)
    """What Redis requires of every client (make run keeps it in <data>/redis-password); the
    same for a restarted Redis, so the services' URLs stay valid."""
    group_sizes: dict[str, int] = field(default_factory=dict)
    """Processes per service of GROUP_VARIABLES (absent: 1). With more than one, the service's
    processes (`gateway`, `gateway-2`, ...) share its ports, each is health-checked on an
    address of its own and restarted on its own (mockex.supervisor)."""

    def __post_init__(self) -> None:
        private_dir(self.data_dir)

    @property
    def redis_url(self) -> str:
        return self.redis_database_url(0)

    def redis_database_url(self, db: int) -> str:
        """The URL of Redis database `db`, with the password."""
        return redis_url_for(f"127.0.0.1:{self.ports.redis}", self.redis_password, db)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def events_topic(self) -> str:
        return names.EVENTS_TOPIC + self.topic_suffix

    @property
    def snapshots_topic(self) -> str:
        return names.SNAPSHOTS_TOPIC + self.topic_suffix

    def service_env(self) -> dict[str, str]:
        ports = self.ports
        return {
            "MOCKEX_REDIS_URL": self.redis_url,
            "MOCKEX_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "MOCKEX_EVENTS_TOPIC": self.events_topic,
            "MOCKEX_SNAPSHOTS_TOPIC": self.snapshots_topic,
            "MOCKEX_ADMIN_KEY": self.admin_key,
            "MOCKEX_DATABASE_URL": os.environ.get("MOCKEX_DATABASE_URL")
            or f"sqlite+aiosqlite:///{self.data_dir / 'mockex.db'}",
            "MOCKEX_GATEWAY_GRPC_ADDRESS": f"0.0.0.0:{ports.gateway}",
            "MOCKEX_ENGINE_GRPC_ADDRESS": f"127.0.0.1:{ports.engine}",
            "MOCKEX_STREAM_GRPC_ADDRESS": f"127.0.0.1:{ports.stream}",
            "MOCKEX_STORE_GRPC_ADDRESS": f"127.0.0.1:{ports.store}",
            "MOCKEX_STREAM_ADDRESS": f"127.0.0.1:{ports.stream}",
            "MOCKEX_STORE_ADDRESS": f"127.0.0.1:{ports.store}",
            "MOCKEX_STREAM_WS_ADDRESS": f"127.0.0.1:{ports.stream_ws}",
            "MOCKEX_DATA_GRPC_ADDRESS": f"127.0.0.1:{ports.data}",
            "MOCKEX_DATA_ADDRESS": f"127.0.0.1:{ports.data}",
            "MOCKEX_GATEWAY_ADDRESS": f"127.0.0.1:{ports.gateway}",
            "MOCKEX_SCENARIO": self.scenario,
            **{variable: str(self.group_size(name)) for name, variable in GROUP_VARIABLES.items()},
            **self.extra_env,
        }

    def group_size(self, service: str) -> int:
        return self.group_sizes.get(service, 1)

    def members(self, service: str) -> list[str]:
        """The children that run `service`, in start order: `gateway`, `gateway-2`, ..."""
        return [service, *(f"{service}-{n}" for n in range(2, self.group_size(service) + 1))]

    def process_address(self, child: str) -> str:
        """A gRPC address for `child` to listen on alone, beside its group's shared port: a
        Unix socket in run_dir (a loopback port when that path is too long)."""
        path = self.run_dir / f"{child}.sock"
        if len(str(path)) <= MAX_SOCKET_PATH:
            path.unlink(missing_ok=True)  # left by a killed predecessor: the bind would fail
            return f"unix:{path}"
        return f"127.0.0.1:{processes.free_port()}"

    def check_shared_ports(self, service: str) -> None:
        """A process of another exchange (or anything else with SO_REUSEPORT) listening on a
        group's port would silently take part of its connections: refuse to start beside it."""
        ours = {
            process.pid
            for child, process in self.processes.items()
            if service_of(child) == service and process.alive()
        }
        for port_name in SHARED_PORTS[service]:
            port = getattr(self.ports, port_name)
            for holder in sorted(processes.port_holders(port) - ours):
                command = processes.process_command(holder) or "?"
                raise RuntimeError(
                    f"port {port} ({PORTS[port_name].variable}) is also served by pid {holder} "
                    f"({command[:80]}), not a process of this exchange: stop it or set "
                    f"{PORTS[port_name].variable}"
                )

    @property
    def run_dir(self) -> Path:
        """Where each child's pid file is (`<name>.pid`), for finding leftovers of a killed run."""
        return self.data_dir / "run"

    def _launch(
        self, process: processes.ManagedProcess, ready: Callable[[], None]
    ) -> processes.ManagedProcess:
        """Start it with a pid file, register it (so stop() reaches it while it is still starting),
        wait until `ready` returns; a start that fails stops the process again."""
        process.pid_file = self.run_dir / f"{process.name}.pid"
        self.processes[process.name] = process.start()
        return processes.wait_or_stop(process, ready)

    def start_redis(self) -> processes.ManagedProcess:
        process = processes.redis_process(
            self.ports.redis, self.data_dir / "redis", self.redis_password
        )
        return self._launch(process, lambda: process.wait_for_port(self.ports.redis, 10))

    def start_kafka(self, timeout: float = 90) -> processes.ManagedProcess:
        process = processes.kafka_process(
            self.ports.kafka, self.ports.kafka_controller, self.data_dir / "kafka"
        )
        return self._launch(process, lambda: process.wait_for_port(self.ports.kafka, timeout))

    def start_infrastructure(self, redis: bool = True, kafka: bool = True) -> None:
        if redis:
            self.start_redis()
        if kafka:
            self.start_kafka()
        asyncio.run(
            processes.create_topics(self.kafka_bootstrap, [self.events_topic, self.snapshots_topic])
        )

    def start_service(
        self, name: str, timeout: float = 60, ready: bool = True
    ) -> processes.ManagedProcess:
        """One of SERVICES, or one process of a group (`gateway-2`, see members); returns once
        its gRPC health check answers SERVING: readiness (its dependencies answer) or, with
        `ready` False, liveness (the process is up), which a restart during an outage waits
        for: the service then heals by itself."""
        service = service_of(name)
        env = self.service_env()
        target: int | str = getattr(self.ports, service)
        if self.group_size(service) > 1:
            self.check_shared_ports(service)
            target = self.process_address(name)
            env[f"MOCKEX_{service.upper()}_PROCESS_ADDRESS"] = target
        process = processes.service_process(name, f"{service}_svc", env, self.data_dir / "logs")
        check = "" if ready else LIVENESS
        return self._launch(process, lambda: wait_serving(process, target, timeout, check))

    def edge_config(self) -> edge.EdgeConfig:
        env = {**os.environ, **self.service_env()}  # what the gateway process sees
        engine_timeout = float(env.get("MOCKEX_ENGINE_TIMEOUT_SECONDS") or 5)
        return edge.EdgeConfig(
            port=self.ports.edge,
            admin_port=self.ports.edge_admin,
            gateway_port=self.ports.gateway,
            stream_ws_port=self.ports.stream_ws,
            # Longer than the gateway waits for the engine, so its answer (with the orderId)
            # reaches the client rather than Envoy's own timeout.
            upstream_timeout_seconds=max(15.0, engine_timeout + 10),
        )

    def start_edge(self, timeout: float = 30) -> processes.ManagedProcess:
        """Envoy in front of the gateway; after the gateway, so its first requests find it."""
        config = self.edge_config()
        process = processes.envoy_process(config, self.data_dir)
        return self._launch(process, lambda: processes.wait_envoy_ready(process, config, timeout))

    def start_services(self) -> None:
        for name in SERVICES:
            for child in self.members(name):
                self.start_service(child)
        self.start_edge()

    def stop(self) -> None:
        """The edge and the services first, Redis and Kafka last (whatever order a restart left
        them in), so each service stops cleanly while its dependencies still answer."""
        order = ["edge", *reversed(SERVICES), "kafka", "redis"]

        def position(child: str) -> int:
            service = service_of(child)
            return order.index(service) if service in order else -1

        for name in sorted(self.processes, key=position):
            self.processes.pop(name).stop()


def wait_serving(
    process: processes.ManagedProcess, port: int | str, timeout: float, service: str = ""
) -> None:
    """Until the process's standard gRPC health check of `service` answers SERVING; `port` is
    a loopback port or a gRPC address (process_address)."""
    deadline = time.monotonic() + timeout
    target = f"127.0.0.1:{port}" if isinstance(port, int) else port
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(
                    f"{process.name} exited (code {process.returncode}); see "
                    f"{process.log_path}:\n{process.tail()}"
                )
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{process.name} not SERVING on {port} after {timeout}s:\n{process.tail()}")
