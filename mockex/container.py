"""The image's entrypoint: `python -m mockex.container engine_svc` runs `python -m engine_svc`.

Secrets reach a container as files (compose secrets, /run/secrets/...) or as variables of their
own (Kubernetes secretKeyRef); the services read plain variables and one Redis URL. So first:
- every `MOCKEX_X_FILE=path` sets `MOCKEX_X` to the file's content (the official images' _FILE
  convention), unless MOCKEX_X is set already;
- MOCKEX_REDIS_PASSWORD goes into MOCKEX_REDIS_URL and MOCKEX_DATABASE_PASSWORD into
  MOCKEX_DATABASE_URL when the URL has no password of its own, so the URL itself is no secret.
Then it execs the service, which stays process 1 and gets SIGTERM from the runtime directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

SERVICES = ("engine_svc", "gateway_svc", "stream_svc", "store_svc", "data_svc")
PASSWORDS_INTO_URLS = {
    "MOCKEX_REDIS_PASSWORD": "MOCKEX_REDIS_URL",
    "MOCKEX_DATABASE_PASSWORD": "MOCKEX_DATABASE_URL",
}


def with_password(url: str, password: str) -> str:
    """`url` with `password` (quoted) in its authority, unless it has one already."""
    parts = urlsplit(url)
    if not password or parts.password is not None or not parts.hostname:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def resolve_secrets(env: MutableMapping[str, str]) -> None:
    """Apply the _FILE convention and put the passwords into their URLs, in place."""
    for name in [name for name in env if name.startswith("MOCKEX_") and name.endswith("_FILE")]:
        target = name.removesuffix("_FILE")
        if not env.get(target):
            env[target] = Path(env[name]).read_text().strip()
    for password, url in PASSWORDS_INTO_URLS.items():
        if env.get(password) and env.get(url):
            env[url] = with_password(env[url], env[password])


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SERVICES:
        sys.exit(f"usage: python -m mockex.container {{{','.join(SERVICES)}}} [args...]")
    resolve_secrets(os.environ)
    os.execv(sys.executable, [sys.executable, "-u", "-m", *sys.argv[1:]])


if __name__ == "__main__":
    main()
