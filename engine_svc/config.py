"""Engine service settings, from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from mockex import names
from mockex.settings import env_float, env_int, env_str, kafka_bootstrap, redis_url


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
    short_limit: int
    max_open_orders: int
    market_open: bool

    @classmethod
    def from_env(cls) -> EngineConfig:
        return cls(
            redis_url=redis_url(),
            kafka_bootstrap=kafka_bootstrap(),
            events_topic=env_str("MOCKEX_EVENTS_TOPIC", names.EVENTS_TOPIC),
            snapshots_topic=env_str("MOCKEX_SNAPSHOTS_TOPIC", names.SNAPSHOTS_TOPIC),
            commands_stream=env_str("MOCKEX_COMMANDS_STREAM", names.COMMANDS_STREAM),
            grpc_address=env_str("MOCKEX_ENGINE_GRPC_ADDRESS", "127.0.0.1:50052"),
            consumer_name=env_str("MOCKEX_ENGINE_CONSUMER", "engine-1"),
            batch_size=env_int("MOCKEX_ENGINE_BATCH_SIZE", 500),
            snapshot_every=env_int("MOCKEX_SNAPSHOT_EVERY", 50_000),
            snapshot_interval_seconds=env_float("MOCKEX_SNAPSHOT_INTERVAL_SECONDS", 60.0),
            short_limit=env_int("MOCKEX_SHORT_LIMIT", 0),
            max_open_orders=env_int("MOCKEX_MAX_OPEN_ORDERS", 0),
            market_open=env_str("MOCKEX_MARKET_OPEN", "1") not in ("0", "false", "no"),
        )
