"""Per-user search rate (SEARCH_RATE_PER_MIN), a token bucket in Redis (common/ratelimit.py)
shared by every search indexer on the same Redis.

Contract:
- Every SearchMessages call of a signed-in user takes one token of the bucket `search` of
  `user:<name>` (capacity and refill: SEARCH_RATE_PER_MIN a minute); empty → RESOURCE_EXHAUSTED
  naming the setting, with `dc-retry-after-ms` in trailing metadata; the search is not run.
- 0 turns the limit off. Redis failing: the call passes (fail open) and a warning is logged, as
  the pods' quotas do: the limit defends against abuse and must not take search down with it.
"""

from __future__ import annotations

import logging

from common.ratelimit import Bucket, Limiter, RedisClient
from session_service.errors import RateLimited
from session_service.store.redis_client import REDIS_ERRORS

logger = logging.getLogger(__name__)


class SearchRate:
    def __init__(self, client: RedisClient, per_min: int) -> None:
        self._per_min = per_min
        self._limiter = Limiter(client)
        self._bucket = Bucket("search", per_min, per_min / 60) if per_min > 0 else None

    async def check(self, user: str) -> None:
        """Takes one search of `user`'s budget, or raises RateLimited."""
        if self._bucket is None:
            return
        try:
            decision = await self._limiter.take(self._bucket, f"user:{user}")
        except REDIS_ERRORS as exc:
            logger.warning("search rate not checked (Redis): %s", exc, extra={"user": user})
            return
        if not decision.allowed:
            raise RateLimited(
                f"too many searches from {user}; at most {self._per_min} a minute"
                f" (SEARCH_RATE_PER_MIN); retry in {decision.retry_after_ms} ms",
                decision.retry_after_ms,
            )
