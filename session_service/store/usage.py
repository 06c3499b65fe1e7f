"""Token usage per user, over all sessions: one Redis hash per user, `dc:usage:{<user>}`, with
fields `prompt`, `completion`, `regenerated` and `answers`.

Contract: the owner adds an answer's usage once, after the answer's end is stored (the end is
stored once, so an answer is never counted twice). The two writes are separate (they live on
different Redis Cluster slots), so a crash or a Redis failure between them leaves that answer
out of its user's totals: the per-user figures may undercount, never overcount. The answer's
own usage (on its message, summed by GetSession) is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from session_service.errors import StoreUnavailable
from session_service.store.keys import usage_key
from session_service.store.redis_client import REDIS_ERRORS, RedisClient

FIELDS = ("prompt", "completion", "regenerated", "answers")


@dataclass(frozen=True)
class UserUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    regenerated_tokens: int = 0
    answers: int = 0


class UsageStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def add(self, user: str, usage: tuple[int, int, int]) -> None:
        """Adds one answer's (prompt, completion, regenerated) tokens to the user's totals."""
        pipe = self._client.pipeline(transaction=False)
        key = usage_key(user)
        for field, amount in zip(FIELDS, (*usage, 1), strict=True):
            pipe.hincrby(key, field, amount)
        try:
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def get(self, user: str) -> UserUsage:
        try:
            values = await self._client.hmget(usage_key(user), list(FIELDS))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return UserUsage(*(int(v or 0) for v in values))
