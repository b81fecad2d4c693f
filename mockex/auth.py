"""API keys: stored only as SHA-256, compared in constant time, looked up in Redis.

The first admin key comes from MOCKEX_ADMIN_KEY (or is generated and printed by `make run`).
Keys of users created through the admin API live in the Redis hash exchange:v1:users, written
by the engine from the logged AccountCreated events, so they survive a Redis loss: while Redis is
being refilled, an unknown key raises CachesIncomplete (retry shortly), never "unknown key".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from exchange.internal.v1 import engine_pb2
from mockex import names
from mockex.caches import CachesIncomplete

API_KEY_METADATA = "x-api-key"
ADMIN_USER_ID = "admin"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "mx_" + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    admin: bool


class ApiKeyAuthenticator:
    """Resolves an API key to its user; the admin key is checked without touching Redis.

    Known keys are remembered for `cache_seconds` (one Redis round trip less per request, the
    gateway's largest cost per order); unknown keys are always looked up again, so a user created
    a moment ago is recognised at once.
    """

    def __init__(self, redis: Redis, admin_key: str, cache_seconds: float = 5.0) -> None:
        self._redis = redis
        self._admin_key_hash = hash_api_key(admin_key) if admin_key else ""
        self._cache_seconds = cache_seconds
        self._known: dict[str, tuple[Caller, float]] = {}

    async def caller(self, api_key: str | None) -> Caller | None:
        if not api_key:
            return None
        key_hash = hash_api_key(api_key)
        if self._admin_key_hash and hmac.compare_digest(key_hash, self._admin_key_hash):
            return Caller(ADMIN_USER_ID, True)
        now = time.monotonic()
        known = self._known.get(key_hash)
        if known is not None and known[1] > now:
            return known[0]
        # One MULTI/EXEC: read apart, the engine's rewrite after Redis came back empty could
        # fall between a miss and the check of its marker, and a known key got 401.
        async with self._redis.pipeline(transaction=True) as pipeline:
            pipeline.hget(names.USERS_KEY, key_hash)
            pipeline.exists(names.VIEWS_KEY)
            raw, complete = await pipeline.execute()
        if raw is None:
            if not complete:
                raise CachesIncomplete()
            return None
        record = engine_pb2.UserRecord.FromString(raw)
        # The hash lookup already matched; compare again in constant time against the record.
        if not hmac.compare_digest(record.api_key_sha256, key_hash):
            return None
        caller = Caller(record.user_id, record.admin)
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[key_hash] = (caller, now + self._cache_seconds)
        return caller


def api_key_from_metadata(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == API_KEY_METADATA:
            return value.decode() if isinstance(value, bytes) else value
    return None
