"""Engine service settings, from the environment.

The exchange settings (short limit, open-order cap) and the opening state decide outcomes, so
they live in the log, not here: a variable that is set and differs from the log becomes a
logged settings change at start; one that is unset leaves the log's value as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mockex import names
from mockex.settings import (
    env_bool,
    env_float,
    env_int,
    env_str,
    kafka_bootstrap,
    local_address,
    redis_url,
)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    redis_url: str
    kafka_bootstrap: str
    events_topic: str
    snapshots_topic: str
    commands_stream: str
    grpc_address: str
    consumer_name: str
    batch_size: int
    """Most commands taken from the stream per round (one Kafka flush per round)."""
    snapshot_every: int
    """Take a snapshot after this many logged commands (0: never)."""
    snapshot_interval_seconds: float
    """...or after this long with at least one new command."""
    short_limit: int | None
    """MOCKEX_SHORT_LIMIT, when set."""
    max_open_orders: int | None
    """MOCKEX_MAX_OPEN_ORDERS, when set."""
    market_open: bool | None
    """MOCKEX_MARKET_OPEN, when set: whether a new exchange starts with the market open (on an
    existing log the log's state stands; the admin API opens and closes the market)."""

    @classmethod
    def from_env(cls) -> EngineConfig:
        return cls(
            redis_url=redis_url(),
            kafka_bootstrap=kafka_bootstrap(),
            events_topic=env_str("MOCKEX_EVENTS_TOPIC", names.EVENTS_TOPIC),
            snapshots_topic=env_str("MOCKEX_SNAPSHOTS_TOPIC", names.SNAPSHOTS_TOPIC),
            commands_stream=env_str("MOCKEX_COMMANDS_STREAM", names.COMMANDS_STREAM),
            grpc_address=env_str("MOCKEX_ENGINE_GRPC_ADDRESS", local_address("engine")),
            consumer_name=env_str("MOCKEX_ENGINE_CONSUMER", "engine-1"),
            batch_size=env_int("MOCKEX_ENGINE_BATCH_SIZE", 500),
            snapshot_every=env_int("MOCKEX_SNAPSHOT_EVERY", 50_000),
            snapshot_interval_seconds=env_float("MOCKEX_SNAPSHOT_INTERVAL_SECONDS", 60.0),
            short_limit=_optional_int("MOCKEX_SHORT_LIMIT"),
            max_open_orders=_optional_int("MOCKEX_MAX_OPEN_ORDERS"),
            market_open=_optional_bool("MOCKEX_MARKET_OPEN"),
        )


def _optional_int(name: str) -> int | None:
    return env_int(name, 0) if os.environ.get(name, "") != "" else None


def _optional_bool(name: str) -> bool | None:
    return env_bool(name, False) if os.environ.get(name, "").strip() else None
