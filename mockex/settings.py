"""Reading settings from the environment, with defaults that work on a laptop."""

from __future__ import annotations

import os
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from exc


class PortKnob(NamedTuple):
    variable: str
    default: int


PORTS: dict[str, PortKnob] = {
    "edge": PortKnob("MOCKEX_HTTP_PORT", 8080),
    "gateway": PortKnob("MOCKEX_GRPC_PORT", 50051),
    "redis": PortKnob("MOCKEX_REDIS_PORT", 6379),
    "kafka": PortKnob("MOCKEX_KAFKA_PORT", 9092),
    "kafka_controller": PortKnob("MOCKEX_KAFKA_CONTROLLER_PORT", 9093),
    "engine": PortKnob("MOCKEX_ENGINE_PORT", 50052),
    "stream": PortKnob("MOCKEX_STREAM_PORT", 50053),
    "store": PortKnob("MOCKEX_STORE_PORT", 50054),
    "stream_ws": PortKnob("MOCKEX_STREAM_WS_PORT", 50055),
    "data": PortKnob("MOCKEX_DATA_PORT", 50056),
    "edge_admin": PortKnob("MOCKEX_EDGE_ADMIN_PORT", 9901),
}
"""Every port of the exchange, one environment variable each (keys: mockex.stack.StackPorts'
fields). The services' address defaults derive from these, so one knob moves both ends."""


def port(name: str) -> int:
    """The port `name` (a key of PORTS) from its environment variable, else its default."""
    knob = PORTS[name]
    value = env_int(knob.variable, knob.default)
    if not 0 < value < 65536:
        raise ValueError(f"environment variable {knob.variable}={value} is not a port (1-65535)")
    return value


def local_address(name: str) -> str:
    """host:port of the service listening on port `name` on this machine."""
    return f"127.0.0.1:{port(name)}"


REDIS_URL_DEFAULT = f"redis://127.0.0.1:{PORTS['redis'].default}/0"
KAFKA_BOOTSTRAP_DEFAULT = f"127.0.0.1:{PORTS['kafka'].default}"


def redis_url_for(address: str, password: str, db: int = 0) -> str:
    """redis://[:password@]host:port/db, the password quoted (redis-py unquotes it)."""
    credentials = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{credentials}{address}/{db}"


def redis_url() -> str:
    """MOCKEX_REDIS_URL, else the local Redis with MOCKEX_REDIS_PASSWORD (mockex.run passes the
    URL with the password it keeps in the data directory)."""
    return env_str(
        "MOCKEX_REDIS_URL",
        redis_url_for(local_address("redis"), env_str("MOCKEX_REDIS_PASSWORD", "")),
    )


def shown_url(url: str) -> str:
    """`url` as logs and banners show it: a password in it replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def kafka_bootstrap() -> str:
    return env_str("MOCKEX_KAFKA_BOOTSTRAP", local_address("kafka"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={raw!r} must be 1/true/yes or 0/false/no")


def log_fsync() -> bool:
    """MOCKEX_LOG_FSYNC (default on): the broker writes each log record to disk before it
    acknowledges it (Kafka `flush.messages=1` on the events topic)."""
    return env_bool("MOCKEX_LOG_FSYNC", True)
