"""Stream service settings, from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from mockex.settings import env_int, env_str, local_address, redis_url


@dataclass(frozen=True, slots=True)
class StreamConfig:
    redis_url: str
    grpc_address: str
    ws_address: str
    """WebSocket channels (SPEC section 4); Envoy routes `/ws/` on port 8080 here."""
    admin_key: str
    """Its holder authenticates as the admin user; empty: no admin key."""
    queue_size: int
    """Engine batches buffered per subscriber (gRPC stream or WebSocket); a subscriber with this
    many unread is cut off."""
    redis_connections: int = 32
    """Pooled Redis connections (one is the feed's); more callers wait for one."""
    redis_wait_seconds: float = 10.0
    """How long a caller (a connecting subscriber's key or symbol lookup) waits for a pooled
    connection before it is answered as if Redis were down."""
    processes: int = 1
    """stream_svc processes serving grpc_address and ws_address together; more than one share
    both ports (SO_REUSEPORT), each with its own feed."""
    process_address: str = ""
    """This process's own gRPC address beside the shared port (mockex.stack gives one to each
    process of a group): health checks reach it and no other; "" for none."""

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"MOCKEX_STREAM_QUEUE_SIZE={self.queue_size} must be at least 1")
        if self.redis_connections < 2:
            raise ValueError(
                f"MOCKEX_STREAM_REDIS_CONNECTIONS={self.redis_connections} must be at least 2"
            )
        if self.processes < 1:
            raise ValueError(f"MOCKEX_STREAM_PROCESSES={self.processes} must be at least 1")

    @property
    def share_port(self) -> bool:
        return self.processes > 1

    @classmethod
    def from_env(cls) -> StreamConfig:
        return cls(
            redis_url=redis_url(),
            grpc_address=env_str("MOCKEX_STREAM_GRPC_ADDRESS", local_address("stream")),
            ws_address=env_str("MOCKEX_STREAM_WS_ADDRESS", local_address("stream_ws")),
            admin_key=env_str("MOCKEX_ADMIN_KEY", ""),
            queue_size=env_int("MOCKEX_STREAM_QUEUE_SIZE", 10_000),
            redis_connections=env_int("MOCKEX_STREAM_REDIS_CONNECTIONS", 32),
            processes=env_int("MOCKEX_STREAM_PROCESSES", 1),
            process_address=env_str("MOCKEX_STREAM_PROCESS_ADDRESS", ""),
        )
