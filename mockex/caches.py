"""Reading the engine's Redis caches: a missing entry is only "not there" when they are complete.

Redis can come back empty after a crash; until the engine has rewritten every cache (and set
names.VIEWS_KEY, last), a missing API key, symbol or book means "not rebuilt yet", and readers
answer UNAVAILABLE instead of 401, 404 or an empty book.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from mockex import names

REBUILDING_MESSAGE = "the exchange is rebuilding its data after a restart; retry in a moment"


def reconnecting(**pool_options: Any) -> dict[str, Any]:
    """Connection-pool options for a reader of Redis: a pooled connection that died with Redis
    is reconnected and its command sent once more, so the first requests after Redis comes
    back do not fail on dead sockets. (Without them redis-py gives pooled connections no retry;
    a command the gateway resends is applied once by the engine's session ledger.)"""
    return {
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [RedisConnectionError],
        **pool_options,
    }


class CachesIncomplete(Exception):
    """An entry is missing and the caches are not complete: retry shortly."""

    def __init__(self) -> None:
        super().__init__(REBUILDING_MESSAGE)


async def check_complete(redis: Redis) -> None:
    """Raise CachesIncomplete unless the engine has finished writing every cache."""
    if not await redis.exists(names.VIEWS_KEY):
        raise CachesIncomplete()
