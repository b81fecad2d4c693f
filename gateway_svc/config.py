"""Gateway settings, from the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from mockex import names
from mockex.settings import env_float, env_int, env_str, local_address, port, redis_url


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    redis_url: str
    grpc_address: str
    store_address: str
    stream_address: str
    simulator_address: str
    """data_svc, which loads scenarios for the admin API."""
    commands_stream: str
    admin_key: str
    gateway_id: str
    """Names this instance's reply channel; unique per process."""
    engine_timeout_seconds: float
    """How long PlaceOrder waits for the engine before answering DEADLINE_EXCEEDED."""
    store_timeout_seconds: float
    max_commands_in_stream: int
    """Refuse new orders (UNAVAILABLE) while the engine's queue is longer than this."""
    max_pending_commands: int
    """Admission control: while this many of this process's commands wait for the engine, a
    new one is refused at once (RESOURCE_EXHAUSTED, retry after 1 s) instead of queueing; 0
    turns it off. 1,000 is about half a second of the gateway's measured capacity."""
    rate_limit_per_second: float
    """Requests per second per API key (admin exempt); 0 turns the limit off."""
    rate_limit_burst: int
    """Requests a key may send at once before the per-second rate applies."""
    session_max_in_flight: int
    """Requests of one OrderSession being processed or answered but unwritten at a time; the
    session reads no further message until one is answered (backpressure)."""
    public_rate_limit_per_second: float = 200.0
    """Public reads (no key) per second per client address; 0 turns the limit off. Generous:
    a classroom behind one NAT shares an address."""
    public_rate_limit_burst: int = 400
    failed_auth_per_second: float = 5.0
    """Calls with a missing or unknown API key per second per client address before they
    are refused as RESOURCE_EXHAUSTED instead of UNAUTHENTICATED; 0 turns the limit off."""
    failed_auth_burst: int = 20
    request_log: str = "writes"
    """One line per call (gateway_svc.requests): "writes" logs every call but successful reads
    at INFO; "errors" only refusals and errors (successes at DEBUG)."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    """Peers whose x-forwarded-for names the client's address (the edge's Envoy); from any
    other peer the header is ignored."""
    processes: int = 1
    """Gateway processes serving grpc_address together; more than one share the port
    (SO_REUSEPORT), and the kernel spreads connections among them."""
    process_address: str = ""
    """This process's own address beside the shared port (mockex.stack gives one to each
    process of a group): health checks reach it and no other; "" for none."""

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"MOCKEX_GATEWAY_PROCESSES={self.processes} must be at least 1")

    @property
    def share_port(self) -> bool:
        return self.processes > 1

    @classmethod
    def from_env(cls) -> GatewayConfig:
        return cls(
            redis_url=redis_url(),
            grpc_address=env_str("MOCKEX_GATEWAY_GRPC_ADDRESS", f"0.0.0.0:{port('gateway')}"),
            store_address=env_str("MOCKEX_STORE_ADDRESS", local_address("store")),
            stream_address=env_str("MOCKEX_STREAM_ADDRESS", local_address("stream")),
            simulator_address=env_str("MOCKEX_DATA_ADDRESS", local_address("data")),
            commands_stream=env_str("MOCKEX_COMMANDS_STREAM", names.COMMANDS_STREAM),
            admin_key=os.environ.get("MOCKEX_ADMIN_KEY", ""),
            gateway_id=env_str("MOCKEX_GATEWAY_ID", f"gw-{secrets.token_hex(4)}"),
            engine_timeout_seconds=env_float("MOCKEX_ENGINE_TIMEOUT_SECONDS", 5.0),
            store_timeout_seconds=env_float("MOCKEX_STORE_TIMEOUT_SECONDS", 5.0),
            max_commands_in_stream=env_int("MOCKEX_MAX_QUEUED_COMMANDS", 100_000),
            max_pending_commands=env_int("MOCKEX_MAX_PENDING_COMMANDS", 1_000),
            rate_limit_per_second=env_float("MOCKEX_RATE_LIMIT_PER_SECOND", 100.0),
            rate_limit_burst=env_int("MOCKEX_RATE_LIMIT_BURST", 200),
            session_max_in_flight=env_int("MOCKEX_SESSION_MAX_IN_FLIGHT", 64),
            public_rate_limit_per_second=env_float("MOCKEX_PUBLIC_RATE_LIMIT_PER_SECOND", 200.0),
            public_rate_limit_burst=env_int("MOCKEX_PUBLIC_RATE_LIMIT_BURST", 400),
            failed_auth_per_second=env_float("MOCKEX_FAILED_AUTH_PER_SECOND", 5.0),
            failed_auth_burst=env_int("MOCKEX_FAILED_AUTH_BURST", 20),
            request_log=env_str("MOCKEX_REQUEST_LOG", "writes"),
            trusted_proxies=tuple(
                host.strip()
                for host in env_str("MOCKEX_TRUSTED_PROXIES", "127.0.0.1,::1").split(",")
                if host.strip()
            ),
            processes=env_int("MOCKEX_GATEWAY_PROCESSES", 1),
            process_address=env_str("MOCKEX_GATEWAY_PROCESS_ADDRESS", ""),
        )
