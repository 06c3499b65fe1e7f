"""Revoked tokens: "every token of user U issued before T is void" (logout everywhere, a leaked
token), kept in Redis and checked by the pods on every call.

Contract:
- `revoke(user)` stores T = now + 1 s (whole seconds, as the `iat` claim) at `dc:auth:revoked:{U}`;
  tokens whose `iat` is before T are refused with UNAUTHENTICATED from then on, on every pod,
  within CACHE_S (each pod caches a user's entry that long). A token without `iat` counts as
  issued at 0: revoked by any revocation.
- `durablechat revoke --user U` calls it. Tokens minted after T work again.
- Redis failing: the check passes (fail open, logged), as for rate limits: availability over a
  revocation that cannot be read. Expiry (`exp`) still bounds every token.
"""

from __future__ import annotations

import logging
import time

from common.ratelimit import RedisClient

logger = logging.getLogger(__name__)

CACHE_S = 2.0
KEY = "dc:auth:revoked:{{{user}}}"


def key_of(user: str) -> str:
    return KEY.format(user=user)


async def revoke(client: RedisClient, user: str, now: float | None = None) -> int:
    """Voids `user`'s tokens issued so far; returns T (seconds)."""
    before = int(now if now is not None else time.time()) + 1
    await client.set(key_of(user), before)
    return before


class Revocations:
    """The pods' view of revocations, cached per user for CACHE_S."""

    def __init__(self, client: RedisClient | None) -> None:
        self._client = client
        self._cache: dict[str, tuple[float, int]] = {}

    async def revoked(self, user: str, issued_at: int) -> bool:
        if self._client is None or not user:
            return False
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is None or now - cached[0] > CACHE_S:
            try:
                raw = await self._client.get(key_of(user))
            except Exception as exc:  # redis-py and OS errors alike: fail open
                logger.warning("token revocation not checked: %s", exc)
                return False
            cached = (now, int(raw) if raw else 0)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[user] = cached
        return issued_at < cached[1]
