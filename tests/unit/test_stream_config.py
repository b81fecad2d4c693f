"""StreamConfig.from_env: laptop defaults, overrides, and a queue that can hold something."""

from __future__ import annotations

import pytest

from mockex.settings import REDIS_URL_DEFAULT
from stream_svc.config import StreamConfig


def test_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MOCKEX_REDIS_URL",
        "MOCKEX_STREAM_GRPC_ADDRESS",
        "MOCKEX_STREAM_WS_ADDRESS",
        "MOCKEX_ADMIN_KEY",
        "MOCKEX_STREAM_QUEUE_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert StreamConfig.from_env() == StreamConfig(
        redis_url=REDIS_URL_DEFAULT,
        grpc_address="127.0.0.1:50053",
        ws_address="127.0.0.1:50055",
        admin_key="",
        queue_size=10_000,
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCKEX_REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("MOCKEX_STREAM_GRPC_ADDRESS", "0.0.0.0:6000")
    monkeypatch.setenv("MOCKEX_STREAM_WS_ADDRESS", "0.0.0.0:6001")
    monkeypatch.setenv("MOCKEX_ADMIN_KEY", "mx_admin")
    monkeypatch.setenv("MOCKEX_STREAM_QUEUE_SIZE", "50")
    assert StreamConfig.from_env() == StreamConfig(
        redis_url="redis://cache:6379/1",
        grpc_address="0.0.0.0:6000",
        ws_address="0.0.0.0:6001",
        admin_key="mx_admin",
        queue_size=50,
    )


def test_queue_size_must_hold_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCKEX_STREAM_QUEUE_SIZE", "0")
    with pytest.raises(ValueError, match="MOCKEX_STREAM_QUEUE_SIZE"):
        StreamConfig.from_env()
