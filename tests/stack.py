"""The whole system as real local processes on free ports, for integration tests."""

from __future__ import annotations

from pathlib import Path

from common.wire import CLUSTER_KEY
from deploy.make_secret import ensure as ensure_secret
from tests.helpers import (
    Process,
    RedisServer,
    free_port,
    python_module,
    wait_grpc_serving,
    wait_http_ok,
)


class Stack:
    """Starts redis, the dev model, the AI service, session service and gateway on demand.

    Every process is stopped by PID in `close()`, which fixtures call in `finally`. The stack's
    own cluster key (CLUSTER_SECRET_FILE, common/planes.py) goes to the AI service, every pod and
    the gateway: ClusterService answers only callers with `cluster_metadata` or an admin token.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: RedisServer | None = None
        self.model: Process | None = None
        self.ai: Process | None = None
        self.session: Process | None = None
        self.gateway: Process | None = None
        self.model_url = ""
        self.ai_addr = ""
        self.session_addr = ""
        self.gateway_url = ""
        self.search: Process | None = None
        self.search_addr = ""
        self.pods: dict[str, Process] = {}
        self.pod_addrs: dict[str, str] = {}
        self.redis_env: dict[str, str] = {}
        """Extra session-service settings for every pod (e.g. REDIS_CLUSTER)."""
        self.cluster_secret_file = workdir / "cluster-secret"
        ensure_secret(self.cluster_secret_file)
        self.cluster_env = {"CLUSTER_SECRET_FILE": str(self.cluster_secret_file)}

    @property
    def cluster_metadata(self) -> tuple[tuple[str, str], ...]:
        """What a test sends to be trusted as one of the cluster's pods (ClusterService)."""
        return ((CLUSTER_KEY, self.cluster_secret_file.read_text().strip()),)

    def start_redis(self) -> RedisServer:
        self.redis = RedisServer(self.workdir / "redis")
        self.redis.start()
        return self.redis

    def start_model(self, token_delay_ms: int = 0) -> Process:
        port = free_port()
        self.model = python_module(
            "model",
            "ai_service.dev_model",
            {"DEV_MODEL_PORT": str(port), "DEV_MODEL_TOKEN_DELAY_MS": str(token_delay_ms)},
            self.workdir,
        )
        self.model.start()
        self.model_url = f"http://127.0.0.1:{port}/v1"
        wait_http_ok(self.model, f"http://127.0.0.1:{port}/healthz")
        return self.model

    def start_ai(self, **extra_env: str) -> Process:
        port = free_port()
        self.ai_addr = f"127.0.0.1:{port}"
        self.ai = python_module(
            "ai",
            "ai_service",
            {
                "AI_PORT": str(port),
                "OPENAI_BASE_URL": self.model_url,
                "OPENAI_API_KEY": "dev",
                **self.cluster_env,
                **extra_env,
            },
            self.workdir,
        )
        self.ai.start()
        wait_grpc_serving(self.ai, self.ai_addr)
        return self.ai

    def start_session(self, **extra_env: str) -> Process:
        assert self.redis is not None
        if not self.session_addr:
            self.session_addr = f"127.0.0.1:{free_port()}"
        env = {
            "SESSION_PORT": self.session_addr.rsplit(":", 1)[1],
            "REDIS_URL": self.redis.url,
            "AI_SERVICE_ADDR": self.ai_addr or "127.0.0.1:1",
            "POD_ID": "session-1",
            "ATTACHMENTS_DIR": str(self.workdir / "attachments"),
            **self.cluster_env,
            **extra_env,
        }
        self.session = python_module("session", "session_service", env, self.workdir)
        self.session.start()
        wait_grpc_serving(self.session, self.session_addr)
        return self.session

    def start_pod(self, pod_id: str, redis_url: str = "", **extra_env: str) -> Process:
        """A session-service pod of a cluster; restarting one keeps its port."""
        address = self.pod_addrs.get(pod_id) or f"127.0.0.1:{free_port()}"
        env = {
            "SESSION_PORT": address.rsplit(":", 1)[1],
            "REDIS_URL": redis_url or (self.redis.url if self.redis else ""),
            "AI_SERVICE_ADDR": self.ai_addr or "127.0.0.1:1",
            "POD_ID": pod_id,
            "ATTACHMENTS_DIR": str(self.workdir / "attachments"),
            **self.redis_env,
            **self.cluster_env,
            **extra_env,
        }
        pod = python_module(pod_id, "session_service", env, self.workdir)
        pod.start()
        self.pods[pod_id] = pod
        self.pod_addrs[pod_id] = address
        wait_grpc_serving(pod, address)
        return pod

    def reserve_pod(self, pod_id: str) -> str:
        """Picks the address a pod will have, so a gateway can know it before it starts."""
        self.pod_addrs[pod_id] = f"127.0.0.1:{free_port()}"
        return self.pod_addrs[pod_id]

    def start_search(self, **extra_env: str) -> Process:
        """The search indexer (docs/search.md) on a database file of this stack; restarting
        it keeps its port and file."""
        assert self.redis is not None
        self.search_addr = self.search_addr or f"127.0.0.1:{free_port()}"
        env = {
            "SEARCH_PORT": self.search_addr.rsplit(":", 1)[1],
            "REDIS_URL": self.redis.url,
            "SEARCH_DB": str(self.workdir / "search.db"),
            **self.redis_env,
            **extra_env,
        }
        self.search = python_module("search", "session_service.search", env, self.workdir)
        self.search.start()
        wait_grpc_serving(self.search, self.search_addr)
        return self.search

    def start_gateway(self, session_addrs: str = "", **extra_env: str) -> Process:
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        self.gateway = python_module(
            "gateway",
            "gateway",
            {
                "GATEWAY_PORT": str(port),
                "SESSION_SERVICE_ADDR": session_addrs or self.session_addr,
                **self.cluster_env,
                **extra_env,
            },
            self.workdir,
        )
        self.gateway.start()
        wait_http_ok(self.gateway, f"{self.gateway_url}/healthz")
        return self.gateway

    def start_all(self) -> Stack:
        self.start_redis()
        self.start_model()
        self.start_ai()
        self.start_session()
        self.start_gateway()
        return self

    def close(self) -> None:
        for proc in (
            self.gateway,
            *self.pods.values(),
            self.search,
            self.session,
            self.ai,
            self.model,
            self.redis,
        ):
            if proc is not None:
                proc.stop()
