"""Which Host names the gateway answers (ALLOWED_HOSTS): a stop to DNS rebinding.

Contract:
- Guaranteed: a request whose `Host` header names no entry of ALLOWED_HOSTS (any port) is
  answered 400 `INVALID_ARGUMENT` with the JSON error body before any route, login or upstream
  call runs; so a page on another site whose DNS name is re-pointed at 127.0.0.1 cannot use the
  gateway (its dev login, or the cookie it sets) as same-origin.
- Entries: host names or IP addresses without a port (`localhost`, `127.0.0.1`, `[::1]`,
  `chat.example.com`), `.example.com` for that name and every subdomain, or `*` for any
  (turns the check off). Compared case-insensitively. Default: localhost, 127.0.0.1, [::1].
- Bad input: a missing Host header is refused the same way; a malformed entry fails at start-up.
- Load: one string comparison per entry per request; no I/O.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import error_body

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
MAX_ECHO_CHARS = 100
"""A refused Host is quoted in the error up to this length."""
_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    """ALLOWED_HOSTS: comma-separated entries; ValueError naming a malformed one."""
    entries = tuple(e.strip().lower() for e in value.split(",") if e.strip())
    for entry in entries:
        if entry == "*" or _NAME.fullmatch(entry):
            continue
        if entry.startswith("[") and entry.endswith("]"):
            try:
                ipaddress.IPv6Address(entry[1:-1])
                continue
            except ValueError:
                pass
        raise ValueError(
            f"{entry!r} is not a host name, an IP address ([v6] in brackets), .domain or *; "
            "give names without a port"
        )
    return entries


def host_name(header: str) -> str:
    """The name part of a Host header ("name", "1.2.3.4" or "[v6]"), lower-case, no port."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() else header


def is_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    name = name.rstrip(".")
    for entry in allowed:
        if entry == "*" or entry.rstrip(".") == name:
            return True
        if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False


def allowed_hosts(allowed: tuple[str, ...]) -> web.middleware:  # type: ignore[valid-type]
    """The middleware refusing other Host names (first in the chain, before any route)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host", "")
        if header and is_allowed(host_name(header), allowed):
            return await handler(request)
        shown = header[:MAX_ECHO_CHARS] if header else "(none)"
        message = (
            f"Host {shown!r} is not served here; the operator lists the names this gateway "
            "answers in ALLOWED_HOSTS"
        )
        return web.json_response(error_body("INVALID_ARGUMENT", message), status=400)

    return middleware
