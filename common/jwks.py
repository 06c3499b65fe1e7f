"""RS256 signing keys by `kid` from an identity provider's JWKS endpoint, fetched off the loop.

Contract:
- Guaranteed: the HTTP fetch runs in a worker thread (`asyncio.to_thread`), so a slow or
  hanging JWKS endpoint never stalls the event loop: calls whose key is cached, and every call
  that needs no key, are served meanwhile. At most one fetch is in flight; callers needing it
  share it.
- A cached key is returned at once; once the key set is older than `lifespan_s` a refresh is
  started in the background (the stale key serves until it lands, so a rotation takes effect
  within one fetch).
- Bad input: a token whose `kid` is unknown causes at most one fetch per `min_refresh_s`
  (a flood of made-up kids cannot turn into a flood of requests to the provider); otherwise it
  is refused with AuthError, as is a token with no parsable header.
- Crash / provider down: a failed fetch is logged and the call refused (UNAUTHENTICATED); the
  keys already held stay in use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import jwt

logger = logging.getLogger(__name__)

LIFESPAN_S = 300.0
"""How long a fetched key set is used before it is refreshed (in the background)."""
MIN_REFRESH_S = 10.0
"""An unknown kid fetches the key set again at most this often."""
FETCH_TIMEOUT_S = 10.0
"""Longest wait for the JWKS endpoint (in the worker thread, never on the loop)."""


class JwksError(Exception):
    """No key for the token; the message says why (never the token)."""


class JwksKeys:
    """Keys by kid. Owned by one Verifier; the dict is replaced whole by each fetch (a worker
    thread), never mutated, so readers on the loop see an old or a new set, never half of one."""

    def __init__(
        self,
        url: str,
        lifespan_s: float = LIFESPAN_S,
        min_refresh_s: float = MIN_REFRESH_S,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout_s)
        self._lifespan_s = lifespan_s
        self._min_refresh_s = min_refresh_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._inflight: asyncio.Future[None] | None = None

    async def key(self, token: str) -> Any:
        """The key that verifies `token`, fetching the key set (in a thread) when needed."""
        kid = _kid(token)
        key = self._keys.get(kid)
        if key is not None:
            if time.monotonic() - self._fetched_at > self._lifespan_s:
                self._start_fetch()  # stale: refresh in the background, serve this one
            return key
        if self._inflight is None or self._inflight.done():
            if time.monotonic() - self._attempted_at < self._min_refresh_s:
                raise JwksError(f"no key with kid {kid!r} (fetched moments ago)")
            self._start_fetch()
        assert self._inflight is not None
        await asyncio.shield(self._inflight)
        return self._found(kid)

    def key_blocking(self, token: str) -> Any:
        """As `key`, for callers with no event loop: fetches in the calling thread."""
        kid = _kid(token)
        if kid not in self._keys and time.monotonic() - self._attempted_at >= self._min_refresh_s:
            self._fetch()
        return self._found(kid)

    def _found(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is None:
            raise JwksError(f"no key with kid {kid!r} at the JWKS endpoint")
        return key

    def _start_fetch(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            return
        self._attempted_at = time.monotonic()
        self._inflight = asyncio.ensure_future(asyncio.to_thread(self._fetch))
        self._inflight.add_done_callback(_retrieve)

    def _fetch(self) -> None:
        """One GET of the key set (blocking: runs in a worker thread)."""
        self._attempted_at = time.monotonic()
        try:
            keys = {
                k.key_id: k.key
                for k in jwt.PyJWKSet.from_dict(self._client.fetch_data()).keys
                if k.key_id and k.public_key_use in (None, "sig")
            }
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as exc:
            logger.warning("JWKS fetch failed", extra={"error": str(exc)})
            raise JwksError(f"cannot fetch the JWKS: {exc}") from exc
        self._keys = keys
        self._fetched_at = time.monotonic()


def _kid(token: str) -> str:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.DecodeError as exc:
        raise JwksError(f"the token is not valid: {exc}") from exc
    if not isinstance(kid, str) or not kid:
        raise JwksError("the token has no kid")
    return kid


def _retrieve(future: asyncio.Future[None]) -> None:
    """A background refresh's failure is already logged in `_fetch`; mark it retrieved."""
    if not future.cancelled():
        future.exception()
