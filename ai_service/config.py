"""AI-service settings from the environment; a missing or malformed value fails at start-up
naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from common.config import ConfigError, env_int, env_str
from common.exposure import allow_insecure, check_exposure
from common.planes import ClusterKey

HttpClient = Literal["aiohttp", "httpx"]
HTTP_CLIENTS: tuple[HttpClient, ...] = ("aiohttp", "httpx")
DEFAULT_PORT = 50052
DEFAULT_MODEL = "durablechat-dev-model"
ContinueMode = Literal["prefill", "restart"]
CONTINUE_MODES: tuple[ContinueMode, ...] = ("prefill", "restart")
PREFILL_MODELS = frozenset({DEFAULT_MODEL})
"""Models known to continue a trailing assistant turn token for token (the dev model,
ai_service/dev_model.py): ANSWER_CONTINUE defaults to prefill for them, else to restart."""
DEFAULT_MAX_TOKENS = 1024
DEFAULT_REQUEST_TIMEOUT_MS = 60_000
DEFAULT_BATCH_MAX_CHUNKS = 32
DEFAULT_BATCH_MS = 20
DEFAULT_BATCH_MAX_MS = 100
DEFAULT_BATCH_US_PER_STREAM = 500
DEV_API_KEY = "dev"
"""Placeholder key, accepted only with an explicit OPENAI_BASE_URL (a local or dev model)."""
MAX_PORT = 65535
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True)
class Config:
    """Everything the AI service reads from its environment, parsed once in `__main__`."""

    bind_host: str = "127.0.0.1"
    """Interface the gRPC server listens on (BIND_HOST)."""
    port: int = DEFAULT_PORT
    """gRPC port (AI_PORT); 0 picks a free one."""
    openai_base_url: str | None = None
    """OpenAI-protocol endpoint (OPENAI_BASE_URL); None means the openai library's default."""
    openai_api_key: str = DEV_API_KEY
    """Bearer key for the model (OPENAI_API_KEY); required unless OPENAI_BASE_URL is set."""
    openai_model: str = DEFAULT_MODEL
    """Model name used when a request does not name one (OPENAI_MODEL)."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Token limit used when a request sets none (AI_MAX_TOKENS)."""
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    """Longest wait to connect to the model or for its next chunk (AI_REQUEST_TIMEOUT_MS); a
    stream that keeps producing is never cut by it."""
    batch_max_chunks: int = DEFAULT_BATCH_MAX_CHUNKS
    """Most model chunks coalesced into one gRPC message (AI_BATCH_MAX_CHUNKS)."""
    metrics_port: int = 0
    """Prometheus endpoint port (METRICS_PORT); 0: none."""
    batch_ms: int = DEFAULT_BATCH_MS
    """After the first message, how long chunks gather before the next one (AI_BATCH_MS) while
    few answers stream; the window widens with the answers streaming at once (below)."""
    http_client: HttpClient = "aiohttp"
    """AI_HTTP_CLIENT: the openai client's HTTP transport, `aiohttp` (less CPU per streamed
    chunk) or `httpx` (the client's default)."""
    batch_max_ms: int = DEFAULT_BATCH_MAX_MS
    """The widest the window gets under load (AI_BATCH_MAX_MS, at least AI_BATCH_MS)."""
    batch_us_per_stream: int = DEFAULT_BATCH_US_PER_STREAM
    """How much each answer streaming at once widens the window (AI_BATCH_US_PER_STREAM): with
    the defaults 20 ms up to 40 answers, 50 ms at 100, 100 ms from 200 on."""
    log_level: str = "INFO"
    """Root log level (LOG_LEVEL)."""
    answer_continue: ContinueMode = "prefill"
    """ANSWER_CONTINUE: how a partial answer (a trailing assistant turn: an owner died
    mid-answer) is gone on from. `prefill`: sent as that trailing turn with
    `continue_final_message: true, add_generation_prompt: false` (llama-server and vLLM then
    stream only the new text); `restart`: the trailing turn is dropped and the model answers
    afresh (what most hosted chat APIs do anyway), the caller told so to replace the partial
    text. Default: prefill for PREFILL_MODELS, else restart."""
    cluster: ClusterKey = field(default_factory=ClusterKey)
    """CLUSTER_SECRET_FILE (common/planes.py): only calls carrying this key are served (health
    checks aside). Required unless AUTH_MODE=off, which with no file leaves the service open."""
    allow_insecure_network: bool = False
    """ALLOW_INSECURE_NETWORK: listen beyond loopback even without CLUSTER_SECRET_FILE, open
    to anyone who reaches the port (tests only; common/exposure.py)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        """Parses and checks every setting; raises ConfigError naming the first bad variable."""
        base_url = environ.get("OPENAI_BASE_URL") or None
        api_key = environ.get("OPENAI_API_KEY") or (DEV_API_KEY if base_url else None)
        if api_key is None:
            raise ConfigError("OPENAI_API_KEY must be set unless OPENAI_BASE_URL names a dev model")
        port = env_int(environ, "AI_PORT", DEFAULT_PORT)
        if port > MAX_PORT:
            raise ConfigError(f"AI_PORT must be at most {MAX_PORT}, got {port}")
        log_level = env_str(environ, "LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {sorted(LOG_LEVELS)}, got {log_level!r}")
        http_client = env_str(environ, "AI_HTTP_CLIENT", "aiohttp")
        if http_client not in HTTP_CLIENTS:
            raise ConfigError(
                f"AI_HTTP_CLIENT must be one of {', '.join(HTTP_CLIENTS)}, not {http_client!r}"
            )
        model = env_str(environ, "OPENAI_MODEL", DEFAULT_MODEL)
        default_continue = "prefill" if model in PREFILL_MODELS else "restart"
        answer_continue = env_str(environ, "ANSWER_CONTINUE", default_continue)
        if answer_continue not in CONTINUE_MODES:
            raise ConfigError(
                f"ANSWER_CONTINUE must be one of {', '.join(CONTINUE_MODES)},"
                f" not {answer_continue!r}"
            )
        cfg = cls(
            answer_continue=answer_continue,
            http_client=http_client,
            allow_insecure_network=allow_insecure(environ),
            bind_host=env_str(environ, "BIND_HOST", "127.0.0.1"),
            port=port,
            openai_base_url=base_url,
            openai_api_key=api_key,
            openai_model=model,
            max_tokens=env_int(environ, "AI_MAX_TOKENS", DEFAULT_MAX_TOKENS, minimum=1),
            request_timeout_ms=env_int(
                environ, "AI_REQUEST_TIMEOUT_MS", DEFAULT_REQUEST_TIMEOUT_MS, minimum=1
            ),
            batch_max_chunks=env_int(
                environ, "AI_BATCH_MAX_CHUNKS", DEFAULT_BATCH_MAX_CHUNKS, minimum=1
            ),
            batch_ms=env_int(environ, "AI_BATCH_MS", DEFAULT_BATCH_MS),
            batch_max_ms=env_int(environ, "AI_BATCH_MAX_MS", DEFAULT_BATCH_MAX_MS),
            batch_us_per_stream=env_int(
                environ, "AI_BATCH_US_PER_STREAM", DEFAULT_BATCH_US_PER_STREAM
            ),
            metrics_port=env_int(environ, "METRICS_PORT", 0),
            log_level=log_level,
            cluster=ClusterKey.from_env(environ),
        )
        if cfg.batch_max_ms < cfg.batch_ms:
            raise ConfigError(
                f"AI_BATCH_MAX_MS ({cfg.batch_max_ms}) must be at least"
                f" AI_BATCH_MS ({cfg.batch_ms})"
            )
        check_exposure(
            "ai_service",
            cfg.bind_host,
            cluster_secret_file=environ.get("CLUSTER_SECRET_FILE", ""),
            allow=cfg.allow_insecure_network,
        )
        return cfg
