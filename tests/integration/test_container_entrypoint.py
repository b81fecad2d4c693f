"""The image's entrypoint and HEALTHCHECK with a real engine, Redis and Kafka, as a container
runs them (no Docker engine here): the secrets come as files (compose secrets), the Redis URL
without its password, and `python -m mockex.container engine_svc` must hand the engine a URL
that a password-protected Redis accepts, exec it (same pid, as process 1 in a container), and
let `python -m mockex.healthcheck` find it from its command line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from mockex import healthcheck, processes
from mockex.stack import wait_serving

pytestmark = pytest.mark.integration


def without_password(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), unquote(parts.password or "")


def test_entrypoint_runs_the_engine_with_file_secrets(
    redis_url: str, kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    plain_url, password = without_password(redis_url)
    (tmp_path / "redis_password").write_text(password + "\n")
    (tmp_path / "admin_key").write_text("mx_entrypoint_test\n")
    port = processes.free_port()
    env = {
        "MOCKEX_REDIS_URL": plain_url,
        "MOCKEX_REDIS_PASSWORD_FILE": str(tmp_path / "redis_password"),
        "MOCKEX_ADMIN_KEY_FILE": str(tmp_path / "admin_key"),
        "MOCKEX_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MOCKEX_EVENTS_TOPIC": topics["events"],
        "MOCKEX_SNAPSHOTS_TOPIC": topics["snapshots"],
        "MOCKEX_COMMANDS_STREAM": f"commands.{topics['events']}",
        "MOCKEX_ENGINE_GRPC_ADDRESS": f"0.0.0.0:{port}",
    }
    engine = processes.ManagedProcess(
        "engine",
        [sys.executable, "-m", "mockex.container", "engine_svc"],
        tmp_path / "engine.log",
        env=env,
    ).start()
    try:
        # Readiness: the engine reached Redis (with the password the entrypoint put into the
        # URL) and Kafka.
        wait_serving(engine, port, 60)
        cmdline = Path(f"/proc/{engine.pid}/cmdline")
        assert healthcheck.running_service(cmdline) == "engine_svc"  # exec'd: the same pid
        for args in ([], ["--liveness"]):
            check = subprocess.run(
                [sys.executable, "-m", "mockex.healthcheck", "--service", "engine_svc", *args],
                env={**env, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
            )
            assert check.returncode == 0, check.stderr
        assert password not in engine.tail(200)
    finally:
        if engine.alive():
            engine.process.send_signal(signal.SIGTERM)
            engine.process.wait(30)
    assert engine.returncode == 0, engine.tail()
