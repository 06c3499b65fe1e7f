"""`StackSpec`: which variant of the system to start, as options of the one Stack.

Variants: access control on (`auth`: AUTH_MODE=jwt with a fresh key), one session service or
N named pods, a Redis Cluster instead of one server, the search indexer, Envoy in front, some
pods behind a network partition, the dev model or a model of the caller's. `start(stack, spec)`
starts them in dependency order (Redis, model, AI, pods, indexer, gateway, Envoy);
`started(workdir, spec)` is the same as a context manager that stops everything afterwards,
even when a start fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.auth import new_secret
from deploy.stack.envoy import TEST_ORIGINS
from deploy.stack.running import Stack


@dataclass(frozen=True)
class StackSpec:
    pods: tuple[str, ...] = ()
    """Named session-service pods; none: the lone session service (POD_ID session-1)."""
    wait_members: bool = False
    """After the pods start, wait until each sees all of them (before the gateway starts)."""
    auth: bool = False
    """AUTH_MODE=jwt for the pods, indexer and gateway, with a new key in workdir/auth-secret."""
    dev_login: bool = False
    """The gateway's /api/login (AUTH_DEV_LOGIN=true)."""
    model: bool = True
    """The dev model; off when `model_url` is given or for a stack without answers."""
    local_model: bool = False
    """llama-server with SmolLM2-135M (`MODEL=local make run`) instead of the dev model."""
    model_url: str = ""
    """An OpenAI-compatible model of the caller's (a fake) for the AI service."""
    token_delay_ms: int | None = 0
    """The dev model's pace; None leaves its default."""
    model_env: Mapping[str, str] = field(default_factory=dict)
    """More of the dev model's environment (e.g. DEV_MODEL_ANSWERS=fresh)."""
    ai: bool = True
    search: bool = False
    """The search indexer, and the gateway's /api/search."""
    gateway: bool = True
    envoy: bool = False
    envoy_origins: tuple[str, ...] = TEST_ORIGINS
    envoy_overrides: Mapping[str, int] = field(default_factory=dict)
    """To envoy_config.render: grpc_calls_per_ip_min, request_headers_timeout_s."""
    redis_cluster: int = 0
    """That many Redis Cluster masters instead of one redis-server."""
    partitioned: tuple[str, ...] = ()
    """Pods that run in a network namespace of their own (Stack.partition; needs root)."""
    redis_conf: Path | None = None
    redis_password: str = ""
    rate_limits_in_redis: bool = False
    """The gateway counts rate limits in the stack's Redis (RATE_LIMIT_REDIS_URL)."""
    ai_env: Mapping[str, str] = field(default_factory=dict)
    pod_env: Mapping[str, str] = field(default_factory=dict)
    env_of_pod: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per pod, on top of `pod_env` (e.g. each pod's METRICS_PORT)."""
    search_env: Mapping[str, str] = field(default_factory=dict)
    gateway_env: Mapping[str, str] = field(default_factory=dict)


def start(stack: Stack, spec: StackSpec) -> Stack:
    """Starts what `spec` asks for on `stack`; the caller closes the stack, also on failure."""
    auth: dict[str, str] = {}
    if spec.auth:
        stack.auth_secret_file = stack.workdir / "auth-secret"
        stack.auth_secret_file.write_bytes(new_secret())
        auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(stack.auth_secret_file)}
    if spec.partitioned:
        stack.partition(spec.partitioned)
    if spec.redis_cluster:
        stack.start_redis_cluster(spec.redis_cluster)
    else:
        stack.start_redis(spec.redis_conf, spec.redis_password)
    if spec.model_url:
        stack.model_url = spec.model_url
    elif spec.local_model:
        stack.start_local_model()
    elif spec.model:
        stack.start_model(spec.token_delay_ms, **spec.model_env)
    if spec.ai:
        stack.start_ai(**spec.ai_env)
    if not spec.pods:
        stack.start_session(**auth, **spec.pod_env)
    for pod in spec.pods:
        stack.start_pod(pod, **{**auth, **spec.pod_env, **spec.env_of_pod.get(pod, {})})
    if spec.wait_members:
        stack.wait_members()
    gateway: dict[str, Any] = {**auth}
    if spec.search:
        stack.start_search(**auth, **spec.search_env)
        gateway["SEARCH_SERVICE_ADDR"] = stack.search_addr
    if spec.dev_login:
        gateway["AUTH_DEV_LOGIN"] = "true"
    if spec.rate_limits_in_redis:
        gateway["RATE_LIMIT_REDIS_URL"] = stack.redis_url
    if spec.gateway:
        stack.start_gateway(**{**gateway, **spec.gateway_env})
    if spec.envoy:
        stack.start_envoy(spec.envoy_origins, overrides=spec.envoy_overrides)
    return stack


@contextlib.contextmanager
def started(workdir: Path, spec: StackSpec, **options: Any) -> Iterator[Stack]:
    """A Stack(workdir, **options) running `spec`; every process is stopped afterwards."""
    stack = Stack(workdir, **options)
    try:
        yield start(stack, spec)
    finally:
        stack.close()
