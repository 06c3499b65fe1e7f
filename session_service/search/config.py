"""Search-indexer settings, read once from the environment (docs/search.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.auth import AuthConfig
from common.config import ConfigError, env_bool, env_int, env_str
from session_service.search.index import MIN_TERM_CHARS


@dataclass(frozen=True)
class SearchConfig:
    bind_host: str = "127.0.0.1"
    """BIND_HOST: address the gRPC server listens on."""
    port: int = 50053
    """SEARCH_PORT: gRPC port of SearchService; 0 picks a free one."""
    db_path: str = "search.db"
    """SEARCH_DB: the SQLite file; made (and filled from every session log) when missing."""
    rebuild: bool = False
    """SEARCH_REBUILD: read every session log again at start, even if the file exists."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """REDIS_URL: the sessions' Redis."""
    redis_cluster: bool = False
    """REDIS_CLUSTER: true when REDIS_URL names a node of a Redis Cluster."""
    redis_timeout_ms: int = 3000
    """REDIS_TIMEOUT_MS: reply timeout of every Redis call (above the feed's 1 s block)."""
    indexer_id: str = "search-1"
    """INDEXER_ID: the feed's consumer group; each indexer with its own file needs its own."""
    rate_per_min: int = 120
    """SEARCH_RATE_PER_MIN: searches one user may make a minute (also the burst), shared by
    every indexer on the same Redis (rate.py); 0: no limit. Applies with AUTH_MODE=jwt."""
    min_term_chars: int = MIN_TERM_CHARS
    """SEARCH_MIN_TERM_CHARS: the fewest characters before the `*` of a prefix search; a
    shorter prefix expands to too many words (INVALID_ARGUMENT)."""
    query_ms: int = 2000
    """SEARCH_QUERY_MS: a search running longer is stopped (RESOURCE_EXHAUSTED), so a costly
    query cannot hold a reader thread."""
    readers: int = 2
    """SEARCH_READERS: searches run at once, each in its own thread and SQLite connection;
    more wait their turn."""
    log_level: str = "INFO"
    auth: AuthConfig = field(default_factory=AuthConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SearchConfig:
        d = cls()
        try:
            auth = AuthConfig.from_env(environ)
        except (ValueError, OSError) as exc:
            raise ConfigError(str(exc)) from exc
        return cls(
            bind_host=env_str(environ, "BIND_HOST", d.bind_host),
            port=env_int(environ, "SEARCH_PORT", d.port),
            db_path=env_str(environ, "SEARCH_DB", d.db_path),
            rebuild=env_bool(environ, "SEARCH_REBUILD", d.rebuild),
            redis_url=env_str(environ, "REDIS_URL", d.redis_url),
            redis_cluster=env_bool(environ, "REDIS_CLUSTER", d.redis_cluster),
            redis_timeout_ms=env_int(environ, "REDIS_TIMEOUT_MS", d.redis_timeout_ms, minimum=1100),
            indexer_id=env_str(environ, "INDEXER_ID", d.indexer_id),
            rate_per_min=env_int(environ, "SEARCH_RATE_PER_MIN", d.rate_per_min),
            min_term_chars=env_int(environ, "SEARCH_MIN_TERM_CHARS", d.min_term_chars, minimum=1),
            query_ms=env_int(environ, "SEARCH_QUERY_MS", d.query_ms, minimum=1),
            readers=env_int(environ, "SEARCH_READERS", d.readers, minimum=1),
            log_level=env_str(environ, "LOG_LEVEL", d.log_level),
            auth=auth,
        )
