"""Files only the user who runs the exchange may read: keys, passwords, data and logs.

The data directory (var/, MOCKEX_DATA_DIR) holds the admin key, the Redis password, the log,
the database and every process's output, which can carry an order or a user id. Directories
are 0700 and files 0600: what this process writes is created so, and every child starts with
the umask PRIVATE_UMASK (mockex.processes), which covers what Redis, Kafka (its log) and SQLite
create themselves.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

PRIVATE_UMASK = 0o077
"""No permission bits for group or others on anything a child of ours creates."""


def private_dir(path: Path) -> Path:
    """`path` as a directory only the user may enter, created if missing; one an earlier version
    left open is closed, which also hides the files it already holds."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def open_private(path: Path, flags: int) -> int:
    """os.open of `path` (O_CREAT added) as a file only the user may read or write, even if it
    existed with a wider mode; its directory is made private first."""
    private_dir(path.parent)
    descriptor = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def write_private(path: Path, content: bytes) -> None:
    """`content` into `path`, mode 0600, replaced whole (a temporary file renamed over it), so
    no reader sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_TRUNC), "wb") as file:
        file.write(content)
    temporary.replace(path)


def kept_secret(path: Path, variable: str, new: Callable[[], str]) -> str:
    """The environment variable `variable` when set, else the secret kept in `path`, made by
    `new` on the first run, so a restart uses the same one."""
    if os.environ.get(variable):
        return os.environ[variable]
    if not path.exists():
        write_private(path, (new() + "\n").encode())
    path.chmod(0o600)
    return path.read_text().strip()


def new_password() -> str:
    """256 random bits, URL-safe (they go into redis:// URLs as they are)."""
    return secrets.token_urlsafe(32)
