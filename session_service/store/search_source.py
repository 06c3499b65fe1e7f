"""What the search indexer reads from Redis (docs/search.md): the hints of the search feed
(keys.FEED_KEY, a stream read by a consumer group) and the sessions' logs and creation times.

Contract: reads only, except the consumer group's own state (created once, hints acknowledged).
Redis failures surface as redis-py's errors (REDIS_ERRORS): the indexer waits and retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from redis.exceptions import ResponseError

from session_service.store.keys import (
    FEED_KEY,
    LOG_KEY_PATTERN,
    log_key,
    meta_key,
    session_of_log_key,
)
from session_service.store.redis_client import RedisClient

Hint = tuple[bytes, dict[bytes, bytes] | None]
"""A feed entry: (its id, its fields; `s` names the session)."""


class SearchSource:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def log_state(self, session_id: str) -> tuple[int, int]:
        """(entries in the session's log, its creation time in ms; 0 when unknown)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(log_key(session_id))
        pipe.hget(meta_key(session_id), "created")
        length, raw_created = await pipe.execute()
        return int(length), int(raw_created or 0)

    async def read_log(self, session_id: str, first: int, count: int) -> list[bytes]:
        """Up to `count` entries of the log from 0-based position `first`."""
        raw = await self._client.lrange(log_key(session_id), first, first + count - 1)
        return cast(list[bytes], raw)

    async def session_ids(self) -> AsyncIterator[str]:
        """Every session that has a log (SCAN: a session written meanwhile may be missed; the
        feed names it)."""
        async for key in self._client.scan_iter(match=LOG_KEY_PATTERN, count=1000):
            yield session_of_log_key(key.decode() if isinstance(key, bytes) else str(key))

    async def ensure_group(self, group: str) -> None:
        """Creates the consumer group (and the feed) unless it is there; new hints only."""
        try:
            await self._client.xgroup_create(FEED_KEY, group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_hints(
        self, group: str, consumer: str, cursor: str, count: int, block_ms: int | None
    ) -> list[Hint]:
        """Hints after `cursor` ("0": those given to this consumer and not acknowledged; ">":
        new ones, waiting up to `block_ms`)."""
        reply: Any = await self._client.xreadgroup(
            group, consumer, {FEED_KEY: cursor}, count=count, block=block_ms
        )
        return cast(list[Hint], reply[0][1]) if reply else []

    async def ack(self, group: str, hint_ids: list[bytes]) -> None:
        await self._client.xack(FEED_KEY, group, *hint_ids)
