"""Reads of a session's older log entries and client ids, on demand (no lease needed: the log
only grows, so an entry once stored at a seq never changes). Used when a windowed session
(activated from a snapshot, log/snapshot.py) needs what is older than its window: history pages,
old cursors, the prompt window, a repeated client id. Redis down or slow: StoreUnavailable.
"""

from __future__ import annotations

from session_service.errors import StoreUnavailable
from session_service.store.keys import idem_key, log_key
from session_service.store.redis_client import REDIS_ERRORS, RedisClient


class LogReads:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def load_entries(self, session_id: str, first_seq: int, last_seq: int) -> list[bytes]:
        """The log's entries with seqs first_seq..last_seq (fewer past the log's end)."""
        try:
            raw = await self._client.lrange(log_key(session_id), first_seq - 1, last_seq - 1)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return [item if isinstance(item, bytes) else item.encode() for item in raw]

    async def entries_at(self, session_id: str, seqs: list[int]) -> list[bytes]:
        """The log's entries at these seqs, in one round trip; StoreUnavailable if one is not
        there (the log only grows: a seq the caller knows is always stored)."""
        pipe = self._client.pipeline(transaction=False)
        for seq in seqs:
            pipe.lindex(log_key(session_id), seq - 1)
        try:
            raw = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if any(item is None for item in raw):
            raise StoreUnavailable(f"session {session_id}: a log entry is missing")
        return [item if isinstance(item, bytes) else item.encode() for item in raw]

    async def client_seq(self, session_id: str, client_id: str) -> int:
        """The seq of the first entry stored with `client_id` (0: none)."""
        try:
            seq = await self._client.hget(idem_key(session_id), client_id)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return int(seq or 0)
