"""Abuse limits of authenticated users, checked by the pod a call enters (common/ratelimit.py).

Contract:
- Only for callers authenticated under AUTH_MODE=jwt (an unverified name could dodge any limit);
  with AUTH_MODE=off nothing is limited or charged.
- Requests: every call (unary or Subscribe) takes one token of the user's bucket
  (RATE_USER_PER_MIN per minute, the same as burst); empty → RESOURCE_EXHAUSTED with
  `dc-retry-after-ms`, nothing done. Counted by the pod that serves the call (the session's
  owner), so a forwarded call counts once and a client cannot skip the count with `dc-hops`.
- Model tokens: a prompt reserves TOKENS_RESERVED_PER_PROMPT (default 1,000, at most a
  budget's size) from the user's per-minute and per-day budgets (TOKENS_PER_MIN,
  TOKENS_PER_DAY), or is refused; when its answer ends, the real prompt + completion tokens are
  settled against the reservation (more is charged, less given back). Parallel prompts thus
  cannot overspend a budget by more than one reservation each; one long answer can overdraw it,
  and the next prompt waits for the debt to refill. A prompt refused or found a duplicate gives
  its reservation back; an answer that never ends keeps it. 0 turns a limit off.
- Redis failing: the check passes (fail open) and a warning is logged; limits are a defence
  against abuse, not a guarantee, and must not take the service down with them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from common.ratelimit import Bucket, Decision, Limiter, RedisClient
from session_service.errors import RateLimited
from session_service.store.redis_client import REDIS_ERRORS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuotaConfig:
    enabled: bool = False
    """True under AUTH_MODE=jwt."""
    requests_per_min: int = 600
    tokens_per_min: int = 50_000
    tokens_per_day: int = 1_000_000
    reserve_per_prompt: int = 1_000
    """Tokens a prompt reserves until its answer's real use is known, so parallel prompts
    cannot overspend a budget before the first answer is charged."""


class Quotas:
    def __init__(self, client: RedisClient, cfg: QuotaConfig) -> None:
        self._limiter = Limiter(client)
        self._cfg = cfg
        self._requests = _bucket("requests", cfg.requests_per_min, 60)
        self._budgets = [
            b
            for b in (
                _bucket("tokens-min", cfg.tokens_per_min, 60),
                _bucket("tokens-day", cfg.tokens_per_day, 86_400),
            )
            if b is not None
        ]

    async def check_request(self, user: str) -> None:
        if self._cfg.enabled and user and self._requests is not None:
            await self._enforce(
                self._limiter.take(self._requests, f"user:{user}"),
                f"too many requests from {user}; at most {self._cfg.requests_per_min} a minute",
            )

    @property
    def reservation(self) -> int:
        """Tokens a prompt reserves from every budget before its answer starts."""
        smallest = min((b.capacity for b in self._budgets), default=0)
        return int(min(self._cfg.reserve_per_prompt, smallest))

    async def reserve(self, user: str) -> int:
        """Reserves `reservation` tokens of every budget for a prompt, or refuses it
        (RateLimited); returns what was reserved (0: nothing is limited)."""
        if not (self._cfg.enabled and user and self._budgets and self.reservation):
            return 0
        await self._enforce(
            self._limiter.take_all(self._budgets, f"user:{user}", self.reservation),
            f"{user} used up their model-token budget",
        )
        return self.reservation

    async def settle(self, user: str, tokens: int) -> None:
        """An answer ended having used `tokens`: charges them less its prompt's reservation
        (a negative difference is given back)."""
        if self._cfg.enabled and user:
            await self.charge(user, tokens - self.reservation)

    async def charge(self, user: str, tokens: int) -> None:
        """Takes (or, negative, gives back) `tokens` from every budget, without refusing."""
        if not (self._cfg.enabled and user and tokens):
            return
        for bucket in self._budgets:
            try:
                await self._limiter.charge(bucket, f"user:{user}", tokens)
            except REDIS_ERRORS as exc:
                logger.warning("token budget not charged: %s", exc, extra={"user": user})

    async def _enforce(self, check: Awaitable[Decision], message: str) -> None:
        try:
            decision = await check
        except REDIS_ERRORS as exc:
            logger.warning("rate limit not checked (Redis): %s", exc)
            return
        if not decision.allowed:
            raise RateLimited(
                f"{message}; retry in {decision.retry_after_ms} ms", decision.retry_after_ms
            )


def _bucket(name: str, per_period: int, period_s: int) -> Bucket | None:
    return Bucket(name, per_period, per_period / period_s) if per_period > 0 else None
