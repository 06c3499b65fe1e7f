"""Per-client limits at the gateway: request rate per IP, open sockets and streams per user.

Contract:
- Every `/api/` and `/ws/` request takes one token of its client IP's bucket (RATE_IP_PER_MIN a
  minute, the same as burst; common/ratelimit.py, shared by all gateways through Redis at
  RATE_LIMIT_REDIS_URL). Empty: 429 with `Retry-After` before anything upstream is called.
  Without RATE_LIMIT_REDIS_URL there is no per-IP limit (logged at start). Redis failing: the
  request passes (fail open, logged).
- The client IP is the TCP peer, or the last address of `X-Forwarded-For` when the peer is one
  of TRUSTED_PROXIES (Envoy), so clients cannot choose their own address.
- An authenticated user may hold MAX_SOCKETS_PER_USER WebSockets and MAX_STREAMS_PER_USER
  server-sent event streams on one gateway at a time; one more is 429 (before the upgrade,
  before the stream's upstream subscription), the message naming the setting. Counted per
  gateway process (not cluster-wide). Anonymous connections (AUTH_MODE=off) are not capped:
  many people may share one address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aiohttp.typedefs import Handler

from common.ratelimit import Bucket, Limiter, RedisClient
from gateway.errors import GatewayError

logger = logging.getLogger(__name__)

LIMITED_PREFIXES = ("/api/", "/ws/")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TooMany(GatewayError):
    status = 429
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


def parse_networks(value: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: comma-separated addresses or CIDR networks; ValueError when malformed."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v)


def from_trusted_proxy(request: web.Request, trusted: tuple[Network, ...]) -> bool:
    """Whether the TCP peer is one of TRUSTED_PROXIES (its X-Forwarded-* headers count)."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(peer in net for net in trusted)


def client_ip(request: web.Request, trusted: tuple[Network, ...]) -> str:
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and from_trusted_proxy(request, trusted):
        return forwarded.split(",")[-1].strip()
    return peer


def ip_rate_limit(
    client: RedisClient | None, per_min: int, trusted: tuple[Network, ...]
) -> web.middleware:  # type: ignore[valid-type]
    limiter = Limiter(client) if client is not None and per_min > 0 else None
    bucket = Bucket("requests", per_min, per_min / 60) if limiter is not None else None
    if limiter is None:
        logger.info("no per-IP rate limit (RATE_LIMIT_REDIS_URL unset or RATE_IP_PER_MIN=0)")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if limiter is None or bucket is None or not request.path.startswith(LIMITED_PREFIXES):
            return await handler(request)
        ip = client_ip(request, trusted)
        try:
            decision = await limiter.take(bucket, f"ip:{ip}")
        except Exception as exc:  # redis-py and OS errors alike: fail open
            logger.warning("per-IP limit not checked: %s", exc)
            return await handler(request)
        if not decision.allowed:
            raise TooMany(
                f"too many requests from {ip}; at most {per_min} a minute",
                decision.retry_after_ms,
            )
        return await handler(request)

    return middleware


class UserCap:
    """Connections of one kind (WebSockets, event streams) per user on this gateway."""

    def __init__(self, limit: int, what: str, setting: str) -> None:
        self._limit = limit
        self._what = what
        self._setting = setting
        self._open: Counter[str] = Counter()

    @contextmanager
    def hold(self, who: str) -> Iterator[None]:
        """Counts one connection of `who` ("": anonymous, not counted); TooMany at the cap."""
        if not who:
            yield
            return
        if self._limit and self._open[who] >= self._limit:
            raise TooMany(
                f"{who} has {self._limit} open {self._what} on this gateway already"
                f" ({self._setting}); close one first",
                1000,
            )
        self._open[who] += 1
        try:
            yield
        finally:
            self._open[who] -= 1
            if not self._open[who]:
                del self._open[who]
