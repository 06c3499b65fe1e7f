"""Cross-origin rules of the gateway's HTTP API and WebSockets (README "Security").

Contract: only origins listed in CORS_ORIGINS (plus the gateway's own origin) may use the API
from a browser. For them: `Access-Control-Allow-Origin` with that origin, preflights answered
(204), `Retry-After`/`ETag` exposed. From any other origin: preflights, writes (anything but
GET/HEAD) and WebSocket upgrades are refused with 403 before any upstream call, so a foreign
page can neither read answers nor act with a visitor's cookie; other requests get no CORS
headers (the browser withholds the response). Requests without `Origin` (curl, servers) pass.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import GatewayError

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "authorization, content-type, last-event-id"
EXPOSE_HEADERS = "retry-after, etag"
PREFLIGHT_MAX_AGE_S = "600"
ORIGIN_KEY = "dc_cors_origin"


class ForeignOrigin(GatewayError):
    status = 403
    code = "PERMISSION_DENIED"


def _same_origin(request: web.Request, origin: str) -> bool:
    return origin in (f"http://{request.host}", f"https://{request.host}")


def cors(allowed: tuple[str, ...]) -> web.middleware:  # type: ignore[valid-type]
    allowed_set = frozenset(allowed)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or _same_origin(request, origin):
            return await handler(request)
        ok = origin in allowed_set
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in (
            request.headers
        )
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if not ok and (preflight or upgrade or request.method not in ("GET", "HEAD")):
            raise ForeignOrigin(f"origin {origin} is not allowed (CORS_ORIGINS)")
        if ok:
            request[ORIGIN_KEY] = origin  # headers added as the response starts (streams too)
        if preflight:
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
            return response
        return await handler(request)

    return middleware


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: the CORS headers of an allowed foreign origin."""
    origin = request.get(ORIGIN_KEY)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers["Vary"] = "Origin"
