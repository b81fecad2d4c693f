"""The pieces of `make run` supervision that need no servers: the backoff schedule, pid files
matched by start time, the port variables and the address defaults they move, topic settings."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import astuple
from pathlib import Path

import pytest

from engine_svc.config import EngineConfig
from gateway_svc.config import GatewayConfig
from mockex import names, processes, settings
from mockex.stack import StackPorts
from mockex.supervisor import Backoff
from store_svc.config import StoreConfig
from stream_svc.config import StreamConfig


def test_backoff_doubles_from_half_a_second_up_to_thirty() -> None:
    backoff = Backoff()
    assert [backoff.delay(failures) for failures in range(1, 10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip
    assert backoff.delay(10_000) == 30.0
    assert backoff.reset_after == 60.0


def test_a_pid_file_names_a_live_process_only_with_its_start_time(tmp_path: Path) -> None:
    path = tmp_path / "run" / "engine.pid"
    assert processes.live_pid(path) is None  # no file
    processes.write_pid_file(path, os.getpid())
    assert processes.live_pid(path) == os.getpid()
    pid, start_time = processes.read_pid_file(path)
    path.write_text(f"{pid} {start_time + 1}\n")  # the pid, recycled by another process
    assert processes.live_pid(path) is None
    path.write_text("garbage\n")
    assert processes.read_pid_file(path) is None and processes.live_pid(path) is None


def test_a_zombie_or_reaped_process_is_not_alive(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    path = tmp_path / "true.pid"
    processes.write_pid_file(path, child.pid)
    deadline = time.monotonic() + 5
    while processes.process_start_time(child.pid) is not None:  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert processes.live_pid(path) is None
    child.wait()
    assert processes.process_start_time(child.pid) is None


def test_ports_default_and_move_with_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for knob in settings.PORTS.values():
        monkeypatch.delenv(knob.variable, raising=False)
    assert StackPorts.from_env() == StackPorts()
    assert (StackPorts().edge, StackPorts().gateway) == (8080, 50051)
    monkeypatch.setenv("MOCKEX_HTTP_PORT", "18080")
    monkeypatch.setenv("MOCKEX_GRPC_PORT", "15051")
    monkeypatch.setenv("MOCKEX_KAFKA_CONTROLLER_PORT", "19093")
    ports = StackPorts.from_env()
    assert (ports.edge, ports.gateway, ports.kafka_controller, ports.redis) == (
        18080, 15051, 19093, 6379,
    )  # fmt: skip
    monkeypatch.setenv("MOCKEX_REDIS_PORT", "70000")
    with pytest.raises(ValueError, match="MOCKEX_REDIS_PORT=70000"):
        StackPorts.from_env()


def test_every_stack_port_has_one_variable() -> None:
    assert set(settings.PORTS) == set(vars(StackPorts()))
    variables = [knob.variable for knob in settings.PORTS.values()]
    assert len(set(variables)) == len(variables)


def test_service_addresses_default_from_the_port_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "MOCKEX_REDIS_URL", "MOCKEX_KAFKA_BOOTSTRAP", "MOCKEX_GATEWAY_GRPC_ADDRESS",
        "MOCKEX_ENGINE_GRPC_ADDRESS", "MOCKEX_STREAM_GRPC_ADDRESS", "MOCKEX_STREAM_WS_ADDRESS",
        "MOCKEX_STORE_GRPC_ADDRESS", "MOCKEX_STREAM_ADDRESS", "MOCKEX_STORE_ADDRESS",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for variable, port in (
        ("MOCKEX_REDIS_PORT", 1001), ("MOCKEX_KAFKA_PORT", 1002), ("MOCKEX_GRPC_PORT", 1003),
        ("MOCKEX_ENGINE_PORT", 1004), ("MOCKEX_STREAM_PORT", 1005), ("MOCKEX_STORE_PORT", 1006),
        ("MOCKEX_STREAM_WS_PORT", 1007),
    ):  # fmt: skip
        monkeypatch.setenv(variable, str(port))
    gateway, engine = GatewayConfig.from_env(), EngineConfig.from_env()
    stream, store = StreamConfig.from_env(), StoreConfig.from_env()
    assert gateway.redis_url == engine.redis_url == stream.redis_url == "redis://127.0.0.1:1001/0"
    assert engine.kafka_bootstrap == store.kafka_bootstrap == "127.0.0.1:1002"
    assert gateway.grpc_address == "0.0.0.0:1003"
    assert engine.grpc_address == "127.0.0.1:1004"
    assert gateway.stream_address == stream.grpc_address == "127.0.0.1:1005"
    assert gateway.store_address == store.grpc_address == "127.0.0.1:1006"
    assert stream.ws_address == "127.0.0.1:1007"
    # The explicit addresses still win, for deployments where the hosts differ.
    monkeypatch.setenv("MOCKEX_STORE_ADDRESS", "store.internal:7000")
    monkeypatch.setenv("MOCKEX_REDIS_URL", "redis://cache:6379/2")
    assert GatewayConfig.from_env().store_address == "store.internal:7000"
    assert StreamConfig.from_env().redis_url == "redis://cache:6379/2"


def test_the_events_topic_is_kept_forever_and_snapshots_are_not() -> None:
    for topic in (names.EVENTS_TOPIC, names.EVENTS_TOPIC + ".1a2b3c4d"):
        assert processes.topic_config(topic)["retention.ms"] == "-1"
    snapshots = processes.topic_config(names.SNAPSHOTS_TOPIC + ".1a2b3c4d")
    assert "retention.ms" not in snapshots
    assert snapshots["max.message.bytes"] == str(names.MAX_RECORD_BYTES)


def test_the_log_is_fsynced_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOCKEX_LOG_FSYNC", raising=False)
    assert processes.topic_config(names.EVENTS_TOPIC)["flush.messages"] == "1"
    assert "flush.messages" not in processes.topic_config(names.SNAPSHOTS_TOPIC)
    monkeypatch.setenv("MOCKEX_LOG_FSYNC", "0")
    assert "flush.messages" not in processes.topic_config(names.EVENTS_TOPIC)


def test_kafka_data_ports_come_from_its_listeners(tmp_path: Path) -> None:
    assert processes.kafka_data_ports(tmp_path) is None
    (tmp_path / "server.properties").write_text(
        "process.roles=broker,controller\n"
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n"
        "advertised.listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n"
    )
    assert processes.kafka_data_ports(tmp_path) == (9092, 9093)


def test_a_free_stack_gets_a_different_port_for_every_process() -> None:
    for _ in range(50):
        ports = astuple(StackPorts.free())
        assert len(set(ports)) == len(ports)
