"""Secrets stay secret: private files, the kept Redis password, URLs and the edge's access log."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis.connection import parse_url

from mockex import edge
from mockex.private import kept_secret, private_dir, write_private
from mockex.processes import redis_config
from mockex.runner import LOG_FORMAT, HideUndecodableMetadata
from mockex.settings import redis_url, redis_url_for, shown_url


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, so only explicit modes protect them."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_private_file_is_0600_even_over_a_readable_one(tmp_path: Path, open_umask) -> None:
    path = tmp_path / "key"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert (path.read_bytes(), mode(path)) == (b"new", 0o600)
    assert not path.with_name("key.tmp").exists()


def test_private_dir_closes_a_directory_left_open(tmp_path: Path, open_umask) -> None:
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o755)
    private_dir(directory)
    private_dir(tmp_path / "new")
    assert (mode(directory), mode(tmp_path / "new")) == (0o700, 0o700)


def test_kept_secret_is_made_once_and_kept(
    tmp_path: Path, open_umask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOCKEX_REDIS_PASSWORD", raising=False)
    made = iter(["first", "second"])
    path = tmp_path / "data" / "redis-password"
    assert kept_secret(path, "MOCKEX_REDIS_PASSWORD", lambda: next(made)) == "first"
    assert kept_secret(path, "MOCKEX_REDIS_PASSWORD", lambda: next(made)) == "first"
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)


def test_kept_secret_from_the_environment_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOCKEX_REDIS_PASSWORD", "from-env")
    path = tmp_path / "redis-password"
    assert kept_secret(path, "MOCKEX_REDIS_PASSWORD", lambda: "made") == "from-env"
    assert not path.exists()


def test_redis_url_carries_a_quoted_password_and_logs_hide_it() -> None:
    url = redis_url_for("127.0.0.1:6379", 'p@ss:w/rd"', 2)
    assert url == "redis://:p%40ss%3Aw%2Frd%22@127.0.0.1:6379/2"
    assert parse_url(url)["password"] == 'p@ss:w/rd"'
    assert shown_url(url) == "redis://:***@127.0.0.1:6379/2"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_services_default_url_takes_the_password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOCKEX_REDIS_URL", raising=False)
    monkeypatch.setenv("MOCKEX_REDIS_PORT", "7000")
    monkeypatch.setenv("MOCKEX_REDIS_PASSWORD", "pw")
    assert redis_url() == "redis://:pw@127.0.0.1:7000/0"


def test_redis_config_quotes_the_password_and_refuses_control_characters() -> None:
    assert redis_config('a"b\\c') == 'requirepass "a\\"b\\\\c"\n'
    for bad in ("", "line\nbreak"):
        with pytest.raises(ValueError, match="Redis password"):
            redis_config(bad)


def test_access_log_has_no_query_string_and_no_header(tmp_path: Path) -> None:
    """The query string is where a browser puts its key (/ws/orderupdates?apiKey=...); X-API-Key
    is a request header: the access log prints neither."""
    config = yaml.safe_load(edge.write(edge.EdgeConfig(), tmp_path).read_text())
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (logger,) = manager["access_log"]
    line = logger["typed_config"]["log_format"]["text_format_source"]["inline_string"]
    operators = re.findall(r"%([A-Z_]+)(?:\(([^)]*)\))?%", line)
    assert ("PATH", "NQ:ORIG_OR_PATH") in operators and ("PATH", "NQ:PATH") in operators
    for name, argument in operators:
        # Only the method: Envoy's :method, or the one mockex.rest_json kept before transcoding.
        assert name not in ("REQ", "REQUEST_HEADER", "QUERY_PARAM") or argument in (
            ":METHOD",
            "X-MOCKEX-HTTP-METHOD?:METHOD",
        )
        assert name != "PATH" or argument.startswith("NQ:")


def test_undecodable_metadata_is_logged_without_its_value() -> None:
    """grpcio's own line for an x-api-key that is not UTF-8 would carry the key."""
    try:
        b"mx_secret\xff".decode()
    except UnicodeDecodeError:
        record = logging.LogRecord(
            HideUndecodableMetadata.LOGGER,
            logging.ERROR,
            "grpc_string.pyx.pxi",
            48,
            HideUndecodableMetadata.TEMPLATE,
            (b"mx_secret\xff",),
            sys.exc_info(),
        )
    assert HideUndecodableMetadata().filter(record)
    formatter = logging.Formatter(LOG_FORMAT)
    assert "mx_secret" not in formatter.format(record)
    assert "not UTF-8" in record.getMessage()
