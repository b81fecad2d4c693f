"""Reading settings from the environment, with defaults that work on a laptop."""

from __future__ import annotations

import os


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


REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/0"
KAFKA_BOOTSTRAP_DEFAULT = "127.0.0.1:9092"


def redis_url() -> str:
    return env_str("MOCKEX_REDIS_URL", REDIS_URL_DEFAULT)


def kafka_bootstrap() -> str:
    return env_str("MOCKEX_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP_DEFAULT)
