"""Session-service settings, read once from the environment in `__main__`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.auth import AuthConfig
from common.config import ConfigError, env_bool, env_int, env_str
from common.exposure import allow_insecure, check_exposure, with_password
from common.planes import ClusterKey
from session_service.limits import Limits
from session_service.store.quotas import QuotaConfig


def _auth(environ: Mapping[str, str]) -> AuthConfig:
    try:
        return AuthConfig.from_env(environ)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc


@dataclass(frozen=True)
class Config:
    bind_host: str = "127.0.0.1"
    """BIND_HOST: address the gRPC server listens on."""
    port: int = 50051
    """SESSION_PORT: gRPC port; 0 picks a free one."""
    metrics_port: int = 0
    """METRICS_PORT: Prometheus endpoint (http://BIND_HOST:port/metrics); 0: none."""
    pod_id: str = "session-1"
    """POD_ID: this pod's name in logs (and, later, in the cluster)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """REDIS_URL: the Redis (AOF, appendfsync always) holding every session."""
    advertise_addr: str = ""
    """ADVERTISE_ADDR: host:port other pods and gateways use to reach this pod; default
    BIND_HOST:SESSION_PORT."""
    redis_timeout_ms: int = 1000
    """REDIS_TIMEOUT_MS: connect and reply timeout of every Redis call."""
    redis_cluster: bool = False
    """REDIS_CLUSTER: true when REDIS_URL names a node of a Redis Cluster."""
    redis_durability: str = "require"
    """REDIS_DURABILITY: `require` (default): at start the pod reads `CONFIG GET appendonly
    appendfsync` from Redis (every master of a Redis Cluster) and exits non-zero, with one log
    line naming the setting, unless each has appendonly=yes and appendfsync=always, the only
    settings under which an acknowledged write survives a crash (store/durability.py). `trust`:
    skip the check: tests and dev on a throwaway Redis, or a managed Redis that hides CONFIG
    and is known to fsync every write before answering."""
    lease_ttl_ms: int = 2000
    """LEASE_TTL_MS: a session's lease lasts this long unless renewed; bounds crash takeover."""
    lease_margin_ms: int = 300
    """LEASE_MARGIN_MS: a pod stops serving a session this long before its lease could expire."""
    member_ttl_ms: int = 2000
    """MEMBER_TTL_MS: a pod that stops heartbeating leaves the ring after this long."""
    members_poll_ms: int = 50
    """MEMBERS_POLL_MS: how often the member set is re-read and the members' Redis connections
    checked: a pod whose process died is noticed within about this long (docs/failover.md).
    Each poll is two or three Redis round trips per pod."""
    handoff_timeout_ms: int = 3000
    """HANDOFF_TIMEOUT_MS: how long a moving session lets its answer in progress finish before
    it lets go; the new owner continues the answer from its stored batches. Keep it well below
    the gateway's 8 s retry budget."""
    ai_service_addr: str = "127.0.0.1:50052"
    """AI_SERVICE_ADDR: host:port of the AI service."""
    ai_timeout_ms: int = 300_000
    """AI_TIMEOUT_MS: deadline of one whole answer."""
    session_idle_ms: int = 300_000
    """SESSION_IDLE_MS: a session unused this long with nothing attached leaves memory."""
    health_probe_ms: int = 1000
    """HEALTH_PROBE_MS: how often Redis is pinged to keep the health status true."""
    log_level: str = "INFO"
    attachments_dir: str = "attachments"
    """ATTACHMENTS_DIR: where attached files are kept; every pod must see the same directory."""
    max_attachment_bytes: int = 64 * 1024 * 1024
    """MAX_ATTACHMENT_BYTES: the largest file one upload may store."""
    max_attachment_bytes_per_user: int = 1024 * 1024 * 1024
    """MAX_ATTACHMENT_BYTES_PER_USER: most bytes of files one user may have uploaded in all
    (a file counts once per uploader; footprint.py)."""
    limits: Limits = field(default_factory=Limits)
    auth: AuthConfig = field(default_factory=AuthConfig)
    """AUTH_MODE, AUTH_SECRET_FILE, AUTH_PUBLIC_KEY_FILE (common/auth.py)."""
    cluster: ClusterKey = field(default_factory=ClusterKey)
    """CLUSTER_SECRET_FILE (common/planes.py): the key forwarded calls, calls to the AI service
    and ClusterService callers carry; required with AUTH_MODE=jwt."""
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    """RATE_USER_PER_MIN, TOKENS_PER_MIN, TOKENS_PER_DAY (quotas.py; 0: off); enforced with
    AUTH_MODE=jwt."""
    redis_password_file: str = ""
    """REDIS_PASSWORD_FILE: a file holding the Redis password, put into REDIS_URL when it has
    none (common/exposure.py)."""
    allow_insecure_network: bool = False
    """ALLOW_INSECURE_NETWORK: start beyond loopback even without a Redis password or
    CLUSTER_SECRET_FILE (tests only; common/exposure.py)."""

    def __post_init__(self) -> None:
        if self.redis_durability not in ("require", "trust"):
            raise ConfigError(
                f"REDIS_DURABILITY must be require or trust, got {self.redis_durability!r}"
            )
        if self.lease_margin_ms * 2 > self.lease_ttl_ms:
            raise ConfigError("LEASE_MARGIN_MS must be at most half of LEASE_TTL_MS")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        d = cls()
        dl, dq = d.limits, d.quotas
        auth = _auth(environ)
        password_file = env_str(environ, "REDIS_PASSWORD_FILE", "")
        cfg = cls(
            redis_password_file=password_file,
            allow_insecure_network=allow_insecure(environ),
            bind_host=env_str(environ, "BIND_HOST", d.bind_host),
            port=env_int(environ, "SESSION_PORT", d.port),
            metrics_port=env_int(environ, "METRICS_PORT", d.metrics_port),
            pod_id=env_str(environ, "POD_ID", d.pod_id),
            redis_url=with_password(env_str(environ, "REDIS_URL", d.redis_url), password_file),
            advertise_addr=env_str(environ, "ADVERTISE_ADDR", d.advertise_addr),
            redis_timeout_ms=env_int(environ, "REDIS_TIMEOUT_MS", d.redis_timeout_ms, minimum=1),
            redis_cluster=env_bool(environ, "REDIS_CLUSTER", d.redis_cluster),
            redis_durability=env_str(environ, "REDIS_DURABILITY", d.redis_durability),
            lease_ttl_ms=env_int(environ, "LEASE_TTL_MS", d.lease_ttl_ms, minimum=100),
            lease_margin_ms=env_int(environ, "LEASE_MARGIN_MS", d.lease_margin_ms, minimum=1),
            member_ttl_ms=env_int(environ, "MEMBER_TTL_MS", d.member_ttl_ms, minimum=100),
            members_poll_ms=env_int(environ, "MEMBERS_POLL_MS", d.members_poll_ms, minimum=10),
            handoff_timeout_ms=env_int(environ, "HANDOFF_TIMEOUT_MS", d.handoff_timeout_ms),
            ai_service_addr=env_str(environ, "AI_SERVICE_ADDR", d.ai_service_addr),
            ai_timeout_ms=env_int(environ, "AI_TIMEOUT_MS", d.ai_timeout_ms, minimum=1),
            session_idle_ms=env_int(environ, "SESSION_IDLE_MS", d.session_idle_ms, minimum=1),
            health_probe_ms=env_int(environ, "HEALTH_PROBE_MS", d.health_probe_ms, minimum=10),
            log_level=env_str(environ, "LOG_LEVEL", d.log_level),
            attachments_dir=env_str(environ, "ATTACHMENTS_DIR", d.attachments_dir),
            max_attachment_bytes=env_int(
                environ, "MAX_ATTACHMENT_BYTES", d.max_attachment_bytes, minimum=1
            ),
            max_attachment_bytes_per_user=env_int(
                environ,
                "MAX_ATTACHMENT_BYTES_PER_USER",
                d.max_attachment_bytes_per_user,
                minimum=1,
            ),
            auth=auth,
            cluster=ClusterKey.from_env(environ),
            quotas=QuotaConfig(
                enabled=auth.mode == "jwt",
                requests_per_min=env_int(environ, "RATE_USER_PER_MIN", dq.requests_per_min),
                tokens_per_min=env_int(environ, "TOKENS_PER_MIN", dq.tokens_per_min),
                tokens_per_day=env_int(environ, "TOKENS_PER_DAY", dq.tokens_per_day),
                reserve_per_prompt=env_int(
                    environ, "TOKENS_RESERVED_PER_PROMPT", dq.reserve_per_prompt
                ),
            ),
            limits=Limits(
                max_content_bytes=env_int(
                    environ, "MAX_CONTENT_BYTES", dl.max_content_bytes, minimum=1
                ),
                max_state_bytes=env_int(environ, "MAX_STATE_BYTES", dl.max_state_bytes, minimum=2),
                max_log_bytes=env_int(environ, "MAX_LOG_BYTES", dl.max_log_bytes, minimum=1),
                max_log_events=env_int(environ, "MAX_LOG_EVENTS", dl.max_log_events, minimum=2),
                max_sessions_per_user=env_int(
                    environ, "MAX_SESSIONS_PER_USER", dl.max_sessions_per_user, minimum=1
                ),
                max_import_bytes=env_int(
                    environ, "MAX_IMPORT_BYTES", dl.max_import_bytes, minimum=1
                ),
                max_page_size=env_int(environ, "MAX_PAGE_SIZE", dl.max_page_size, minimum=1),
                default_page_size=env_int(
                    environ, "DEFAULT_PAGE_SIZE", dl.default_page_size, minimum=1
                ),
                subscriber_queue=env_int(
                    environ, "SUBSCRIBER_QUEUE", dl.subscriber_queue, minimum=1
                ),
                max_streams_per_user=env_int(
                    environ, "MAX_STREAMS_PER_USER", dl.max_streams_per_user
                ),
                max_queued_prompts=env_int(environ, "MAX_QUEUED_PROMPTS", dl.max_queued_prompts),
                answer_batch_chunks=env_int(
                    environ, "ANSWER_BATCH_CHUNKS", dl.answer_batch_chunks, minimum=1
                ),
                answer_batch_ms=env_int(environ, "ANSWER_BATCH_MS", dl.answer_batch_ms),
                answer_retries=env_int(environ, "ANSWER_RETRIES", dl.answer_retries),
                continue_answers=env_str(environ, "ON_OWNER_LOSS", "continue") in ("continue",),
                context_tokens=env_int(environ, "CONTEXT_TOKENS", dl.context_tokens, minimum=1),
                deleted_retention_s=env_int(environ, "DELETED_RETENTION_S", dl.deleted_retention_s),
                auto_title_tokens=env_int(environ, "AUTO_TITLE_TOKENS", dl.auto_title_tokens),
                purge_interval_s=env_int(
                    environ, "PURGE_INTERVAL_S", dl.purge_interval_s, minimum=1
                ),
            ),
        )
        check_exposure(
            "session_service",
            cfg.bind_host,
            redis_urls=[("REDIS_URL", cfg.redis_url)],
            cluster_secret_file=environ.get("CLUSTER_SECRET_FILE", ""),
            allow=cfg.allow_insecure_network,
        )
        return cfg
