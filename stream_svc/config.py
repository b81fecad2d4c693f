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

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"MOCKEX_STREAM_QUEUE_SIZE={self.queue_size} must be at least 1")

    @classmethod
    def from_env(cls) -> StreamConfig:
        return cls(
            redis_url=redis_url(),
            grpc_address=env_str("MOCKEX_STREAM_GRPC_ADDRESS", local_address("stream")),
            ws_address=env_str("MOCKEX_STREAM_WS_ADDRESS", local_address("stream_ws")),
            admin_key=env_str("MOCKEX_ADMIN_KEY", ""),
            queue_size=env_int("MOCKEX_STREAM_QUEUE_SIZE", 10_000),
        )
