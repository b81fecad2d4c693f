"""store_svc settings, read from the environment once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from mockex import names, settings
from mockex.processes import REPO_ROOT

DATABASE_URL_DEFAULT = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'mockex.db'}"
GRPC_ADDRESS_DEFAULT = "127.0.0.1:50054"
FRESHNESS_TIMEOUT_SECONDS_DEFAULT = 5.0


@dataclass(frozen=True)
class StoreConfig:
    database_url: str = DATABASE_URL_DEFAULT
    kafka_bootstrap: str = settings.KAFKA_BOOTSTRAP_DEFAULT
    events_topic: str = names.EVENTS_TOPIC
    snapshots_topic: str = names.SNAPSHOTS_TOPIC
    grpc_address: str = GRPC_ADDRESS_DEFAULT
    freshness_timeout_seconds: float = FRESHNESS_TIMEOUT_SECONDS_DEFAULT
    """How long an answer may wait for the database to hold the log as it stood when the request
    arrived; then UNAVAILABLE, never an older answer (store_svc.freshness)."""

    @classmethod
    def from_env(cls) -> StoreConfig:
        return cls(
            database_url=settings.env_str("MOCKEX_DATABASE_URL", DATABASE_URL_DEFAULT),
            kafka_bootstrap=settings.kafka_bootstrap(),
            events_topic=settings.env_str("MOCKEX_EVENTS_TOPIC", names.EVENTS_TOPIC),
            snapshots_topic=settings.env_str("MOCKEX_SNAPSHOTS_TOPIC", names.SNAPSHOTS_TOPIC),
            grpc_address=settings.env_str(
                "MOCKEX_STORE_GRPC_ADDRESS", settings.local_address("store")
            ),
            freshness_timeout_seconds=_positive_seconds(
                "MOCKEX_STORE_FRESHNESS_TIMEOUT_SECONDS", FRESHNESS_TIMEOUT_SECONDS_DEFAULT
            ),
        )


def _positive_seconds(name: str, default: float) -> float:
    value = settings.env_float(name, default)
    if value <= 0:
        raise ValueError(f"environment variable {name}={value:g} must be more than 0")
    return value
