"""Safe defaults beyond loopback: what a service must have before it listens on a network.

Contract:
- Guaranteed: `check_exposure` raises ConfigError at start-up (the service exits naming the
  setting to fix) when the service binds an address other than loopback (BIND_HOST) and
    - one of its Redis URLs has no password (anyone on the network could read every session
      or forge its log): set a password in the URL or REDIS_PASSWORD_FILE; or
    - it serves or calls the AI service and CLUSTER_SECRET_FILE is unset (the AI service would
      answer anyone: free use of the model at the operator's cost).
  On loopback (127.0.0.0/8, ::1, localhost) nothing is required: a laptop stays one command.
- The one override, for tests and throw-away setups: ALLOW_INSECURE_NETWORK=true (logged as a
  warning at start).
- REDIS_PASSWORD_FILE: a file holding the Redis password (compose's secret job writes one);
  `with_password` puts it into a Redis URL that has none, so every client of that URL uses it.
- Bad input: an unreadable password file fails at start-up naming REDIS_PASSWORD_FILE.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from common.config import ConfigError, env_bool

logger = logging.getLogger(__name__)

OVERRIDE = "ALLOW_INSECURE_NETWORK"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine ("" and 0.0.0.0 do not)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def allow_insecure(environ: Mapping[str, str]) -> bool:
    """ALLOW_INSECURE_NETWORK: skip `check_exposure` (tests, throw-away setups)."""
    return env_bool(environ, OVERRIDE, False)


def has_password(url: str) -> bool:
    """Whether a redis:// or rediss:// URL carries a password (user info or `?password=`)."""
    parts = urlsplit(url)
    return bool(parts.password) or bool(parse_qs(parts.query).get("password"))


def with_password(url: str, password_file: str) -> str:
    """`url` with the password read from `password_file` when it has none ("" file: as is)."""
    if not url or not password_file or has_password(url):
        return url
    try:
        password = Path(password_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"REDIS_PASSWORD_FILE: cannot read {password_file}: {exc}") from exc
    if not password:
        raise ConfigError(f"REDIS_PASSWORD_FILE: {password_file} is empty")
    parts = urlsplit(url)
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname or ''}"
    if ":" in (parts.hostname or ""):
        netloc = f"{user}:{quote(password, safe='')}@[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_exposure(
    service: str,
    bind_host: str,
    *,
    redis_urls: Iterable[tuple[str, str]] = (),
    cluster_secret_file: str | None = None,
    allow: bool = False,
) -> None:
    """Raises ConfigError when `service`, bound to `bind_host`, would be open on a network.

    `redis_urls`: (setting name, URL) pairs ("" URLs are skipped). `cluster_secret_file`: the
    CLUSTER_SECRET_FILE value for a service that serves or calls the AI service; None when the
    service has nothing to do with it."""
    if is_loopback(bind_host):
        return
    problems = [
        f"{name} has no password (set one in the URL, redis://:PASSWORD@host:port/0, or "
        "REDIS_PASSWORD_FILE, and start redis-server with --requirepass)"
        for name, url in redis_urls
        if url and not has_password(url)
    ]
    if cluster_secret_file == "":
        problems.append(
            "CLUSTER_SECRET_FILE is unset, so the AI service answers anyone (set it to a file "
            "holding the cluster secret, the same file for pods and the AI service)"
        )
    if not problems:
        return
    if allow:
        logger.warning(
            "%s listens beyond loopback without protection (%s=true): %s",
            service,
            OVERRIDE,
            "; ".join(problems),
        )
        return
    raise ConfigError(
        f"{service} binds BIND_HOST={bind_host}, beyond loopback, but "
        + "; and ".join(problems)
        + f". To run open on a trusted network anyway (tests): {OVERRIDE}=true"
    )


def redacted(url: str) -> str:
    """`url` fit for a log line: its password replaced by `***`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
