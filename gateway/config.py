"""The gateway's settings, read once from the environment at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.auth import AuthConfig
from common.config import ConfigError, env_bool, env_int, env_str
from common.exposure import allow_insecure, check_exposure, is_loopback, with_password
from common.planes import ClusterKey
from gateway.abuse import Network, parse_networks
from gateway.hosts import DEFAULT_ALLOWED_HOSTS, parse_allowed_hosts

MIB = 1024 * 1024
HISTORY_FRAME_SLACK_BYTES = 4096
"""What a history frame adds to its messages (brackets, the omitted-messages marker)."""
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True)
class Config:
    """Everything the gateway needs to run; built by `from_env` in `__main__` and passed down."""

    port: int
    """GATEWAY_PORT: TCP port of the HTTP and WebSocket server (0 picks a free one)."""
    bind_host: str
    """BIND_HOST: address to listen on."""
    session_service_addr: str
    """SESSION_SERVICE_ADDR: host:port of the session service."""
    grpc_deadline_ms: int
    """GRPC_DEADLINE_MS: deadline of every unary call, and of a new thread's first catch-up."""
    ws_max_message_bytes: int
    """WS_MAX_MESSAGE_BYTES: largest WebSocket frame accepted; larger closes with 1009."""
    http_max_body_bytes: int
    """HTTP_MAX_BODY_BYTES: largest HTTP request body accepted; larger answers 413."""
    ws_send_queue: int
    """WS_SEND_QUEUE: frames one socket may have waiting; beyond it the socket is closed (1013)."""
    log_level: str
    """LOG_LEVEL: threshold of the JSON logs."""
    sse_heartbeat_ms: int = 15_000
    """SSE_HEARTBEAT_MS: a comment line on an idle event stream this often (keeps proxies open
    and finds clients that left)."""
    web_dir: Path = DEFAULT_WEB_DIR
    """WEB_DIR: the web page's files (index.html, app.css, app.js built by `make web`)."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """AUTH_MODE, AUTH_SECRET_FILE, AUTH_PUBLIC_KEY_FILE (common/auth.py)."""
    dev_login: bool = False
    """AUTH_DEV_LOGIN: serve POST /api/login, which mints a token for any name (dev only;
    needs AUTH_SECRET_FILE; refused at start-up unless BIND_HOST is loopback)."""
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    """ALLOWED_HOSTS: comma-separated Host names (any port) the gateway answers; others get
    400 before any route (gateway/hosts.py). Default localhost,127.0.0.1,[::1]."""
    redis_password_file: str = ""
    """REDIS_PASSWORD_FILE: a file holding the Redis password, put into RATE_LIMIT_REDIS_URL
    when it has none (common/exposure.py)."""
    allow_insecure_network: bool = False
    """ALLOW_INSECURE_NETWORK: start beyond loopback even with a password-less
    RATE_LIMIT_REDIS_URL (tests only; common/exposure.py)."""
    rate_limit_redis_url: str = ""
    """RATE_LIMIT_REDIS_URL: the Redis holding per-IP buckets (gateway/abuse.py); empty: none."""
    rate_ip_per_min: int = 1200
    """RATE_IP_PER_MIN: requests per client IP per minute (0: no limit)."""
    trusted_proxies: tuple[Network, ...] = ()
    """TRUSTED_PROXIES: addresses/CIDRs whose X-Forwarded-For names the client (Envoy)."""
    max_sockets_per_user: int = 32
    """MAX_SOCKETS_PER_USER: WebSockets one user (or anonymous IP) may hold on this gateway."""
    cors_origins: tuple[str, ...] = ()
    """CORS_ORIGINS: comma-separated origins (scheme://host[:port]) other sites' pages may call
    the HTTP API from; empty: same-origin only."""
    search_service_addr: str = ""
    """SEARCH_SERVICE_ADDR: host:port of the search indexer ("": /api/search answers 503)."""
    max_attachment_bytes: int = 64 * 1024 * 1024
    """MAX_ATTACHMENT_BYTES: a declared upload length over this is 413 before it is read (the
    session service enforces its own limit on what it stores)."""
    max_history_reply_bytes: int = 4 * MIB
    """MAX_HISTORY_REPLY_BYTES: most bytes of messages (encoded JSON) in one `(GET_HISTORY)`
    frame or `GET /api/chat/session/{id}` answer; a longer history answers with the newest
    messages that fit and a marker saying how many older ones to page with `GET .../messages`."""
    ws_send_queue_bytes: int = 8 * MIB
    """WS_SEND_QUEUE_BYTES: bytes of frames one socket may have waiting or being written; beyond
    it the socket is closed (1013), also when its client stopped reading. At least
    MAX_HISTORY_REPLY_BYTES plus HISTORY_FRAME_SLACK_BYTES, so one history reply fits."""
    max_streams_per_user: int = 32
    """MAX_STREAMS_PER_USER: server-sent event streams one authenticated user may hold open on
    this gateway (0: no cap); one more is 429."""
    header_read_timeout_ms: int = 10_000
    """HEADER_READ_TIMEOUT_MS: a connection whose request line and headers are not complete this
    long after it opened (or after the next request's first byte) is closed (slowloris)."""
    send_stall_timeout_ms: int = 30_000
    """SEND_STALL_TIMEOUT_MS: a connection whose client reads none of its waiting output this
    long is aborted (a reply, event stream or socket nobody reads)."""
    fanout_port: int = 0
    """FANOUT_PORT: TCP port of the gRPC fan-out (SessionService.Subscribe served from one
    upstream stream per session and user, gateway/fanout_server.py); 0: not served."""
    fanout_window_events: int = 10_000
    """FANOUT_WINDOW_EVENTS: log events a fan-out feed holds per session; a cursor older than
    them is served by relaying the owner's own stream."""
    fanout_stream_queue: int = 4096
    """FANOUT_STREAM_QUEUE: events one fan-out stream may fall behind before it is ended
    RESOURCE_EXHAUSTED (as the session service's SUBSCRIBER_QUEUE)."""
    fanout_max_streams_per_user: int = 100
    """FANOUT_MAX_STREAMS_PER_USER: fan-out streams one signed-in user may hold open on this
    gateway (0: no cap; as the session service's MAX_STREAMS_PER_USER); one more is
    RESOURCE_EXHAUSTED."""
    cluster: ClusterKey = field(default_factory=ClusterKey)
    """CLUSTER_SECRET_FILE (common/planes.py): sent with ListMembers, which pods answer only to
    the cluster; required with AUTH_MODE=jwt."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        log_level = env_str(environ, "LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {sorted(LOG_LEVELS)}, got {log_level!r}")
        try:
            auth = AuthConfig.from_env(environ)
        except (ValueError, OSError) as exc:
            raise ConfigError(str(exc)) from exc
        bind_host = env_str(environ, "BIND_HOST", "127.0.0.1")
        dev_login = env_bool(environ, "AUTH_DEV_LOGIN", False)
        if dev_login and not auth.secret:
            raise ConfigError("AUTH_DEV_LOGIN=true needs AUTH_SECRET_FILE (it mints HS256 tokens)")
        if dev_login and not is_loopback(bind_host):
            raise ConfigError(
                f"AUTH_DEV_LOGIN=true signs in anyone under any name; it is refused with "
                f"BIND_HOST={bind_host} (beyond loopback): set AUTH_DEV_LOGIN=false and use "
                "tokens from your identity provider"
            )
        if dev_login and (auth.issuer or auth.audience):
            raise ConfigError(
                "AUTH_DEV_LOGIN=true mints tokens without iss/aud, which AUTH_ISSUER / "
                "AUTH_AUDIENCE would refuse: unset one or the other"
            )
        try:
            hosts = parse_allowed_hosts(
                env_str(environ, "ALLOWED_HOSTS", ",".join(DEFAULT_ALLOWED_HOSTS))
            )
        except ValueError as exc:
            raise ConfigError(f"ALLOWED_HOSTS: {exc}") from exc
        password_file = env_str(environ, "REDIS_PASSWORD_FILE", "")
        origins = tuple(o.strip() for o in env_str(environ, "CORS_ORIGINS", "").split(",") if o)
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
                raise ConfigError(f"CORS_ORIGINS: {origin!r} is not scheme://host[:port]")
        try:
            proxies = parse_networks(env_str(environ, "TRUSTED_PROXIES", ""))
        except ValueError as exc:
            raise ConfigError(f"TRUSTED_PROXIES: {exc}") from exc
        history, queue = _history_and_queue_bytes(environ)
        cfg = cls(
            port=env_int(environ, "GATEWAY_PORT", 8080),
            bind_host=bind_host,
            allowed_hosts=hosts,
            redis_password_file=password_file,
            allow_insecure_network=allow_insecure(environ),
            session_service_addr=env_str(environ, "SESSION_SERVICE_ADDR", "127.0.0.1:50051"),
            search_service_addr=env_str(environ, "SEARCH_SERVICE_ADDR", ""),
            max_attachment_bytes=env_int(
                environ, "MAX_ATTACHMENT_BYTES", 64 * 1024 * 1024, minimum=1
            ),
            grpc_deadline_ms=env_int(environ, "GRPC_DEADLINE_MS", 5000, minimum=1),
            ws_max_message_bytes=env_int(environ, "WS_MAX_MESSAGE_BYTES", MIB, minimum=1),
            http_max_body_bytes=env_int(environ, "HTTP_MAX_BODY_BYTES", 4 * MIB, minimum=1),
            ws_send_queue=env_int(environ, "WS_SEND_QUEUE", 1024, minimum=1),
            sse_heartbeat_ms=env_int(environ, "SSE_HEARTBEAT_MS", 15_000, minimum=10),
            web_dir=Path(env_str(environ, "WEB_DIR", str(DEFAULT_WEB_DIR))),
            auth=auth,
            cluster=ClusterKey.from_env(environ),
            dev_login=dev_login,
            cors_origins=origins,
            rate_limit_redis_url=with_password(
                env_str(environ, "RATE_LIMIT_REDIS_URL", ""), password_file
            ),
            rate_ip_per_min=env_int(environ, "RATE_IP_PER_MIN", 1200),
            trusted_proxies=proxies,
            max_sockets_per_user=env_int(environ, "MAX_SOCKETS_PER_USER", 32),
            log_level=log_level,
            max_history_reply_bytes=history,
            ws_send_queue_bytes=queue,
            max_streams_per_user=env_int(environ, "MAX_STREAMS_PER_USER", 32),
            header_read_timeout_ms=env_int(environ, "HEADER_READ_TIMEOUT_MS", 10_000, minimum=1),
            send_stall_timeout_ms=env_int(environ, "SEND_STALL_TIMEOUT_MS", 30_000, minimum=1),
            fanout_port=env_int(environ, "FANOUT_PORT", 0, minimum=0),
            fanout_window_events=env_int(environ, "FANOUT_WINDOW_EVENTS", 10_000, minimum=1),
            fanout_stream_queue=env_int(environ, "FANOUT_STREAM_QUEUE", 4096, minimum=1),
            fanout_max_streams_per_user=env_int(environ, "FANOUT_MAX_STREAMS_PER_USER", 100),
        )
        check_exposure(
            "gateway",
            cfg.bind_host,
            redis_urls=[("RATE_LIMIT_REDIS_URL", cfg.rate_limit_redis_url)],
            allow=cfg.allow_insecure_network,
        )
        return cfg

    @property
    def grpc_deadline_s(self) -> float:
        return self.grpc_deadline_ms / 1000

    @property
    def header_read_timeout_s(self) -> float:
        return self.header_read_timeout_ms / 1000

    @property
    def send_stall_timeout_s(self) -> float:
        return self.send_stall_timeout_ms / 1000


def _history_and_queue_bytes(environ: Mapping[str, str]) -> tuple[int, int]:
    """MAX_HISTORY_REPLY_BYTES and WS_SEND_QUEUE_BYTES; a send queue too small for one history
    reply fails at start-up naming both settings."""
    history = env_int(environ, "MAX_HISTORY_REPLY_BYTES", 4 * MIB, minimum=1024)
    queue = env_int(environ, "WS_SEND_QUEUE_BYTES", 8 * MIB, minimum=1)
    if queue < history + HISTORY_FRAME_SLACK_BYTES:
        raise ConfigError(
            f"WS_SEND_QUEUE_BYTES ({queue}) must be at least MAX_HISTORY_REPLY_BYTES ({history})"
            f" + {HISTORY_FRAME_SLACK_BYTES}, or every long history would close its socket"
        )
    return history, queue
