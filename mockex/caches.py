"""Reading the engine's Redis caches: a missing entry is only "not there" when they are complete.

Redis can come back empty after a crash; until the engine has rewritten every cache (and set
names.VIEWS_KEY, last), a missing API key, symbol or book means "not rebuilt yet", and readers
answer UNAVAILABLE instead of 401, 404 or an empty book.
"""

from __future__ import annotations

from redis.asyncio import Redis

from mockex import names

REBUILDING_MESSAGE = "the exchange is rebuilding its data after a restart; retry in a moment"


class CachesIncomplete(Exception):
    """An entry is missing and the caches are not complete: retry shortly."""

    def __init__(self) -> None:
        super().__init__(REBUILDING_MESSAGE)


async def check_complete(redis: Redis) -> None:
    """Raise CachesIncomplete unless the engine has finished writing every cache."""
    if not await redis.exists(names.VIEWS_KEY):
        raise CachesIncomplete()
