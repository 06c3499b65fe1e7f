"""The purge queue of deleted threads in Redis (keys.PURGE_KEY) and the purge of one thread;
the loop that drives them is features/threads/purge.py.

Contract:
- `purge` is one idempotent script (lua/purge.lua): a thread is purged only if it is still
  deleted, its purge time has come and no pod holds its lease. Its `meta` (all but its epoch),
  `log` and `idem` keys go together.
- The steps after a purge touch other slots and are separate calls: `hint_and_dequeue` (the
  search feed's hint, then off the queue: a crash in between repeats the hint, never loses it)
  and `give_back` (the owner's session count, footprint.py).
- Every Redis failure raises StoreUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

from session_service.errors import StoreUnavailable
from session_service.store.keys import (
    FEED_KEY,
    FEED_MAXLEN,
    PURGE_KEY,
    idem_key,
    lease_key,
    log_key,
    meta_key,
    owned_key,
    snapshot_key,
)
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.scripts import register

PURGED = 1
NOT_DELETED = 0
NOT_YET = -1


@dataclass(frozen=True)
class Purge:
    """One purge's outcome: PURGED (and the owner whose count it leaves, "" none), NOT_DELETED
    (restored or already purged) or NOT_YET (not due, or a pod holds its lease)."""

    outcome: int
    owner: str = ""


class PurgeQueue:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._purge = register(client, "purge")

    async def due(self, now_ms: int, limit: int) -> list[str]:
        """Up to `limit` queued threads due by `now_ms`, the earliest first."""
        try:
            raw = await self._client.zrange(
                PURGE_KEY, "-inf", now_ms, byscore=True, offset=0, num=limit
            )
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]

    async def purge(self, session_id: str, now_ms: int) -> Purge:
        s = session_id
        keys = [meta_key(s), log_key(s), idem_key(s), lease_key(s), snapshot_key(s)]
        try:
            reply = await self._purge(keys=keys, args=[now_ms])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        outcome = int(reply[0])
        return Purge(outcome, reply[1].decode() if outcome == PURGED else "")

    async def hint_and_dequeue(self, session_id: str) -> None:
        """Hints the search indexer (it drops the thread's rows), then takes it off the queue."""
        try:
            await self._client.xadd(
                FEED_KEY, {"s": session_id}, maxlen=FEED_MAXLEN, approximate=True
            )
            await self._client.zrem(PURGE_KEY, session_id)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def give_back(self, owner: str, session_id: str) -> None:
        """The purged session no longer counts among `owner`'s (another slot)."""
        try:
            await self._client.srem(owned_key(owner), session_id)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
