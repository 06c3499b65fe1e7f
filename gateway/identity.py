"""Who is calling the gateway, and the token its upstream calls carry (README "Security").

Contract:
- With AUTH_MODE=jwt every `/api/chat/` and `/ws/` request needs a token, taken from (first
  match) the `Authorization: Bearer` header, a `Sec-WebSocket-Protocol` entry `bearer.<token>`
  (next to `durablechat`) or the `dc_token` cookie (HttpOnly, SameSite=Strict, set by the dev
  login). A token never travels in a URL, so none reaches an access log. Missing or invalid:
  401 with `WWW-Authenticate: Bearer`, before anything upstream is called.
- The verified token is forwarded unchanged on every upstream call made for the request
  (a context variable read by upstream.py), so the session owner decides, not the gateway.
- With AUTH_MODE=off nothing is required; a token sent anyway is still forwarded.
- `POST /api/login {"user"}` mints a one-day HS256 token into the cookie only when
  AUTH_DEV_LOGIN=true (the `make run` default, for trying the page): it trusts whatever name
  is typed, so never enable it where real users log in (the gateway refuses to start with it
  unless BIND_HOST is loopback). The cookie is `Secure` when the request came over https:
  TLS to the gateway itself, or `X-Forwarded-Proto: https` from a TRUSTED_PROXIES peer (Envoy).
"""

from __future__ import annotations

import json
from contextvars import ContextVar

from aiohttp import web
from aiohttp.typedefs import Handler

from common.auth import COOKIE, AuthError, Verifier, mint
from common.wire import AUTHORIZATION
from gateway.abuse import Network, from_trusted_proxy
from gateway.errors import BadRequest, GatewayError

WS_PROTOCOL = "durablechat"
WS_BEARER = "bearer."
PROTECTED_PREFIXES = ("/api/chat/", "/api/threads", "/api/search", "/api/attachments", "/ws/")
DEV_TOKEN_TTL_S = 24 * 3600
MAX_USER_CHARS = 128

_metadata: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("dc_auth", default=())
_user: ContextVar[str] = ContextVar("dc_user", default="")


class Unauthenticated(GatewayError):
    status = 401
    code = "UNAUTHENTICATED"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="durablechat"'}


def upstream_metadata() -> tuple[tuple[str, str], ...]:
    """The metadata an upstream call made for the current request carries."""
    return _metadata.get()


def use_metadata(metadata: tuple[tuple[str, str], ...]) -> None:
    """Makes `metadata` what upstream calls of the current task carry (a thread hub's stream:
    the token of its newest socket)."""
    _metadata.set(metadata)


def current_user() -> str:
    """The authenticated user of the current request ("" when anonymous)."""
    return _user.get()


def token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header:
        return header
    for entry in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        entry = entry.strip()
        if entry.startswith(WS_BEARER):
            return "Bearer " + entry[len(WS_BEARER) :]
    cookie = request.cookies.get(COOKIE, "")
    return f"Bearer {cookie}" if cookie else ""


def authenticate(verifier: Verifier) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PROTECTED_PREFIXES):
            return await handler(request)
        authorization = token_of(request)
        try:
            user, _ = await verifier.identify_async(authorization)
        except AuthError as exc:
            raise Unauthenticated(str(exc)) from exc
        meta = ((AUTHORIZATION, authorization),) if authorization else ()
        metadata_token, user_token = _metadata.set(meta), _user.set(user)
        try:
            return await handler(request)
        finally:
            _metadata.reset(metadata_token)
            _user.reset(user_token)

    return middleware


def whoami(verifier: Verifier, dev_login: bool) -> Handler:
    """`GET /api/me`: {user, auth, devLogin} for the page; "" when the token is missing or bad."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            user, _ = await verifier.identify_async(token_of(request))
        except AuthError:
            user = ""
        mode = "jwt" if verifier.required else "off"
        return web.json_response({"user": user, "auth": mode, "devLogin": dev_login})

    return handler


class DevLogin:
    """`POST /api/login` and `POST /api/logout` (see the module docstring)."""

    def __init__(self, secret: bytes, trusted_proxies: tuple[Network, ...] = ()) -> None:
        self._secret = secret
        self._trusted = trusted_proxies

    def over_https(self, request: web.Request) -> bool:
        """TLS to us, or to the trusted proxy in front (its X-Forwarded-Proto; a client's own
        header is ignored)."""
        if request.secure:
            return True
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return forwarded == "https" and from_trusted_proxy(request, self._trusted)

    async def login(self, request: web.Request) -> web.Response:
        try:
            fields = json.loads(await request.read())
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise BadRequest('body must be JSON: {"user": "name"}') from exc
        user = fields.get("user") if isinstance(fields, dict) else None
        if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_CHARS:
            raise BadRequest(f"user must be a string of 1 to {MAX_USER_CHARS} characters")
        token = mint(self._secret, user, DEV_TOKEN_TTL_S)
        response = web.json_response({"user": user, "token": token})
        response.set_cookie(
            COOKIE,
            token,
            max_age=DEV_TOKEN_TTL_S,
            httponly=True,
            samesite="Strict",
            secure=self.over_https(request),
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.json_response({"user": ""})
        response.del_cookie(COOKIE, path="/")
        return response
