"""Who is calling: signed tokens (JWT, PyJWT), verified the same way by every service.

With `AUTH_MODE=jwt` a call must carry `authorization: Bearer <token>` (or, from a browser, the
`dc_token` cookie); a missing, malformed, forged, expired or `alg=none` token is refused before
anything is read or stored. The verified `sub` claim is the caller; what they may do is decided
by each session's owner (session_service/actor/access.py). `AUTH_MODE=off` accepts every call; it
must be set explicitly (the services refuse to start with neither a key nor `off`).

Keys: `AUTH_SECRET_FILE` (HS256; `durablechat token` mints with it), `AUTH_PUBLIC_KEY_FILE`
(RS256, verify only) or `AUTH_JWKS_URL` (RS256 keys by `kid` from an identity provider's JWKS,
common/jwks.py: fetched in a worker thread, never on the event loop, and cached for 5 minutes;
async callers use `identify_async`). The accepted algorithm is fixed by which key is configured,
never taken from the token. `AUTH_ISSUER` / `AUTH_AUDIENCE`, when set, must match the token's
`iss` / `aud`; both are required with `AUTH_JWKS_URL` (an identity provider signs tokens for
many applications: without them a token it issued for another one would pass here).
docs/security.md has the whole picture.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from common.jwks import JwksError, JwksKeys

MODES = ("off", "jwt")
BEARER = "bearer "
LEEWAY_S = 5
"""Clock skew tolerated on `exp` and `nbf`."""
ADMIN_CLAIM = "dc_admin"
"""`"dc_admin": true` makes a token an operator's (ClusterService: drain, hand-off, status);
only `durablechat token --admin`, which holds the signing key, mints it (common/planes.py)."""


class AuthError(Exception):
    """The call has no acceptable identity; the message says why (never the token)."""


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "off"
    """AUTH_MODE: jwt (the default of `from_env`) | off."""
    secret: bytes = b""
    """From AUTH_SECRET_FILE: the HS256 key."""
    public_key: str = ""
    """From AUTH_PUBLIC_KEY_FILE: an RS256 public key (PEM)."""
    jwks_url: str = ""
    """AUTH_JWKS_URL: RS256 keys from a JWKS endpoint."""
    issuer: str = ""
    """AUTH_ISSUER: the `iss` every token must carry ("": not checked; required with JWKS)."""
    audience: str = ""
    """AUTH_AUDIENCE: the `aud` every token must name ("": not checked; required with JWKS)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AuthConfig:
        mode = environ.get("AUTH_MODE", "jwt")
        if mode not in MODES:
            raise ValueError(f"AUTH_MODE must be one of {MODES}, got {mode!r}")
        secret_file = environ.get("AUTH_SECRET_FILE", "")
        key_file = environ.get("AUTH_PUBLIC_KEY_FILE", "")
        secret = Path(secret_file).read_bytes().strip() if secret_file else b""
        public_key = Path(key_file).read_text() if key_file else ""
        jwks_url = environ.get("AUTH_JWKS_URL", "")
        if mode == "jwt" and not (secret or public_key or jwks_url):
            raise ValueError(
                "AUTH_MODE=jwt (the default) needs AUTH_SECRET_FILE, AUTH_PUBLIC_KEY_FILE or "
                "AUTH_JWKS_URL; AUTH_MODE=off allows anonymous access to everything"
            )
        issuer = environ.get("AUTH_ISSUER", "")
        audience = environ.get("AUTH_AUDIENCE", "")
        if jwks_url and not (issuer and audience):
            raise ValueError(
                "AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE: your identity provider signs "
                "tokens for other applications too; set the issuer URL and this service's audience"
            )
        return cls(mode, secret, public_key, jwks_url, issuer, audience)


class Verifier:
    """Turns the `authorization` value of a call into its user, or raises AuthError."""

    def __init__(self, cfg: AuthConfig) -> None:
        self.required = cfg.mode == "jwt"
        self._jwks = JwksKeys(cfg.jwks_url) if cfg.jwks_url else None
        self._issuer = cfg.issuer or None
        self._audience = cfg.audience or None
        if cfg.public_key or cfg.jwks_url:
            self._key: str | bytes = cfg.public_key
            self._algorithms = ["RS256"]
        else:
            self._key = cfg.secret
            self._algorithms = ["HS256"]

    def user(self, authorization: str | None) -> str:
        """The caller's user id; "" when auth is off and no token was sent."""
        return self.identify(authorization)[0]

    def identify(self, authorization: str | None) -> tuple[str, int]:
        """(user, issued at: the `iat` claim in seconds, 0 when absent); ("", 0) when auth is
        off and no token was sent. With AUTH_JWKS_URL a key fetch blocks the calling thread:
        on an event loop use `identify_async`."""
        token = self._token(authorization)
        if token is None:
            return "", 0
        try:
            key = self._jwks.key_blocking(token) if self._jwks else self._key
        except JwksError as exc:
            raise AuthError(f"no key for the token: {exc}") from exc
        return self._verified(token, key)

    async def identify_async(self, authorization: str | None) -> tuple[str, int]:
        """As `identify`; a JWKS fetch runs in a worker thread, so the loop serves other calls
        meanwhile."""
        token = self._token(authorization)
        if token is None:
            return "", 0
        try:
            key = await self._jwks.key(token) if self._jwks else self._key
        except JwksError as exc:
            raise AuthError(f"no key for the token: {exc}") from exc
        return self._verified(token, key)

    def _token(self, authorization: str | None) -> str | None:
        """The bearer token (None when none was sent and none is required)."""
        if not authorization:
            if self.required:
                raise AuthError("this call needs `authorization: Bearer <token>`")
            return None
        if not authorization.lower().startswith(BEARER):
            raise AuthError("authorization must be `Bearer <token>`")
        return authorization[len(BEARER) :].strip()

    def _verified(self, token: str, key: object) -> tuple[str, int]:
        required = ["sub", "exp"]
        required += ["iss"] if self._issuer else []
        required += ["aud"] if self._audience else []
        try:
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=self._algorithms,
                options={"require": required},
                leeway=LEEWAY_S,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is not valid: {exc}") from exc
        user = claims["sub"]
        if not isinstance(user, str) or not user:
            raise AuthError("the token's sub must be a non-empty string")
        issued = claims.get("iat", 0)
        return user, issued if isinstance(issued, int) else 0


COOKIE = "dc_token"
"""The browser's token cookie (HttpOnly; set by the gateway's dev login or by your own login)."""


def from_cookie(cookie_header: str) -> str:
    """`Bearer <token>` from a Cookie header holding `dc_token` (gRPC-web calls from the page
    reach the pods through Envoy with the browser's cookies); "" when there is none."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return f"Bearer {value}"
    return ""


def is_admin(authorization: str) -> bool:
    """Whether the token in `authorization` says `"dc_admin": true`. Reads the claim only: call
    it after `Verifier.identify` accepted this same value (signature, expiry), and revocation."""
    token = authorization[len(BEARER) :].strip()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return False
    return claims.get(ADMIN_CLAIM) is True


def new_secret() -> bytes:
    """A fresh HS256 key (256 bits), hex-encoded so it can live in a text file."""
    return secrets.token_hex(32).encode()


def mint(
    secret: bytes, user: str, ttl_s: int, now: float | None = None, admin: bool = False
) -> str:
    """An HS256 token for `user`, valid for `ttl_s` seconds; with `admin`, an operator's."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {"sub": user, "iat": issued, "exp": issued + ttl_s}
    if admin:
        claims[ADMIN_CLAIM] = True
    return jwt.encode(claims, secret, algorithm="HS256")
