"""The whole exchange as processes: Redis, Kafka, and the services, wired by environment.

One definition serves `make run` (fixed ports, data under var/) and the integration tests (free
ports, temporary directories), so what the tests start is what participants get.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mockex import edge, names, processes

SERVICES = ("engine", "store", "stream", "gateway")


@dataclass
class StackPorts:
    redis: int = 6379
    kafka: int = 9092
    kafka_controller: int = 9093
    gateway: int = 50051
    engine: int = 50052
    stream: int = 50053
    store: int = 50054
    edge: int = 8080
    """Envoy: REST/JSON, gRPC-Web and /ws/ for participants (SPEC.md section 3)."""
    edge_admin: int = 9901
    """Envoy's admin interface (stats, /ready), loopback only."""
    stream_ws: int = 50055
    """stream_svc's WebSocket server, behind the edge's /ws/ paths."""

    @classmethod
    def free(cls) -> StackPorts:
        return cls(**{port.name: processes.free_port() for port in fields(cls)})


@dataclass
class ExchangeStack:
    data_dir: Path
    admin_key: str
    ports: StackPorts = field(default_factory=StackPorts)
    extra_env: dict[str, str] = field(default_factory=dict)
    topic_suffix: str = ""
    """Appended to topic names, so tests can share one broker."""
    processes: dict[str, processes.ManagedProcess] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

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
            "MOCKEX_DATABASE_URL": f"sqlite+aiosqlite:///{self.data_dir / 'mockex.db'}",
            "MOCKEX_GATEWAY_GRPC_ADDRESS": f"0.0.0.0:{ports.gateway}",
            "MOCKEX_ENGINE_GRPC_ADDRESS": f"127.0.0.1:{ports.engine}",
            "MOCKEX_STREAM_GRPC_ADDRESS": f"127.0.0.1:{ports.stream}",
            "MOCKEX_STORE_GRPC_ADDRESS": f"127.0.0.1:{ports.store}",
            "MOCKEX_STREAM_ADDRESS": f"127.0.0.1:{ports.stream}",
            "MOCKEX_STORE_ADDRESS": f"127.0.0.1:{ports.store}",
            "MOCKEX_STREAM_WS_ADDRESS": f"127.0.0.1:{ports.stream_ws}",
            **self.extra_env,
        }

    def start_infrastructure(self, redis: bool = True, kafka: bool = True) -> None:
        if redis:
            self.processes["redis"] = processes.start_redis(
                self.ports.redis, self.data_dir / "redis"
            )
        if kafka:
            self.processes["kafka"] = processes.start_kafka(
                self.ports.kafka, self.ports.kafka_controller, self.data_dir / "kafka"
            )
        asyncio.run(
            processes.create_topics(self.kafka_bootstrap, [self.events_topic, self.snapshots_topic])
        )

    def start_service(self, name: str, timeout: float = 60) -> processes.ManagedProcess:
        process = processes.python_service(
            name, f"{name}_svc", self.service_env(), self.data_dir / "logs"
        )
        self.processes[name] = process
        wait_serving(process, getattr(self.ports, name), timeout)
        return process

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
        process = processes.start_envoy(self.edge_config(), self.data_dir, timeout)
        self.processes["edge"] = process
        return process

    def start_services(self) -> None:
        for name in SERVICES:
            self.start_service(name)
        self.start_edge()

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()


def wait_serving(process: processes.ManagedProcess, port: int, timeout: float) -> None:
    """Until the process's standard gRPC health check answers SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(
                    f"{process.name} exited; see {process.log_path}:\n{process.tail()}"
                )
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{process.name} not SERVING on {port} after {timeout}s:\n{process.tail()}")
