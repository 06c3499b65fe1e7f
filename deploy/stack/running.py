"""`Stack`: the system as local processes, one start step per process, stopped together.

Processes: redis-server (AOF, fsync always) or a Redis Cluster, the dev model, the AI service,
session-service pods, the search indexer, the gateway and Envoy. Every step waits until its
process is ready (gRPC health SERVING, HTTP 200) and raises with the process's log tail if it
exits first. Ports are free ports unless `ports` names them (`make run`'s fixed ports); every
process is stopped by PID in `close()`, newest first, which callers put in `finally`.
The stack's own cluster key (CLUSTER_SECRET_FILE, common/planes.py) goes to the AI service,
every pod and the gateway: ClusterService answers only callers with it or an admin token.
Steps are public so a test can start a stack piecemeal, or stop and restart one process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.wire import CLUSTER_KEY
from deploy import envoy_config
from deploy.make_secret import ensure as ensure_secret
from deploy.stack.envoy import TEST_ORIGINS, host_port, start_envoy
from deploy.stack.llama import READY_TIMEOUT_S as LLAMA_READY_TIMEOUT_S
from deploy.stack.llama import ai_env as llama_ai_env
from deploy.stack.llama import llama_process
from deploy.stack.netns import Netns
from deploy.stack.ports import free_port
from deploy.stack.processes import (
    QUIET,
    Process,
    RedisServer,
    python_module,
    wait_grpc_serving,
    wait_http_ok,
)
from deploy.stack.redis_cluster import MASTERS, RedisClusterNodes, start_cluster
from deploy.stack.waits import eventually


class Stack:
    """Where each process listens, and the processes (None until started).

    `workdir` holds the cluster key, Envoy's config and, unless `log_dir` / `data_dir` say
    otherwise, every log and the data (redis/, attachments/, search.db). `pid_dir`: each
    process's PID in <name>.pid there. `base_env`: what every service of ours gets under its
    own settings (QUIET by default: anonymous, no automatic titles)."""

    def __init__(
        self,
        workdir: Path,
        *,
        log_dir: Path | None = None,
        data_dir: Path | None = None,
        pid_dir: Path | None = None,
        base_env: Mapping[str, str] = QUIET,
        cluster_secret_file: Path | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        detached: bool = False,
        ready_timeout: float = 20.0,
    ) -> None:
        self.workdir = workdir
        self.log_dir = log_dir or workdir
        self._redis_log = log_dir / "redis.log" if log_dir else None
        self.data_dir = data_dir or workdir
        self.pid_dir = pid_dir
        self.base_env = dict(base_env)
        self.host = host
        self.ports = dict(ports or {})
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.redis: RedisServer | None = None
        self.redis_cluster: RedisClusterNodes | None = None
        self.netns: Netns | None = None
        self.partitioned: set[str] = set()
        self.model: Process | None = None
        self.ai: Process | None = None
        self.session: Process | None = None
        self.gateway: Process | None = None
        self.search: Process | None = None
        self.envoy: Process | None = None
        self.model_url = ""
        self.model_ai_env: dict[str, str] = {}
        """The AI service's model settings for a model this stack started (llama-server's)."""
        self.ai_addr = ""
        self.session_addr = ""
        self.gateway_url = ""
        self.fanout_addr = ""
        """The gateway's gRPC fan-out (FANOUT_PORT): Subscribe from its feeds."""
        self.search_addr = ""
        self.envoy_url = ""
        self.pods: dict[str, Process] = {}
        self.pod_addrs: dict[str, str] = {}
        self.redis_env: dict[str, str] = {}
        """Extra session-service settings for every pod and the indexer (e.g. REDIS_CLUSTER)."""
        self.auth_secret_file: Path | None = None
        """The HS256 key of a stack with access control on (StackSpec.auth)."""
        self.cluster_secret_file = cluster_secret_file or workdir / "cluster-secret"
        ensure_secret(self.cluster_secret_file)
        self.cluster_env = {"CLUSTER_SECRET_FILE": str(self.cluster_secret_file)}

    @property
    def cluster_metadata(self) -> tuple[tuple[str, str], ...]:
        """What a caller sends to be trusted as one of the cluster's pods (ClusterService)."""
        return ((CLUSTER_KEY, self.cluster_secret_file.read_text().strip()),)

    @property
    def redis_url(self) -> str:
        """Where pods find Redis: the cluster, the host end of a partition, or the server."""
        if self.redis_cluster is not None:
            return self.redis_cluster.url
        assert self.redis is not None, "start_redis first"
        if self.netns is not None:
            return f"redis://{self.netns.host_ip}:{self.redis.port}/0"
        return self.redis.url

    @property
    def session_addrs(self) -> list[str]:
        """Every session-service address: the lone session's, then each pod's."""
        return [a for a in [self.session_addr, *self.pod_addrs.values()] if a]

    def member_views(self) -> dict[str, list[str]]:
        """Each pod's latest view of the member set, from its log."""
        out: dict[str, list[str]] = {}
        for name, pod in self.pods.items():
            for line in pod.log_path.read_text().splitlines():
                if '"members changed"' in line:
                    out[name] = json.loads(line)["members"]
        return out

    def wait_members(self, timeout: float = 30.0) -> None:
        """Waits until every pod sees every pod as a member."""
        names = sorted(self.pods)
        eventually(lambda: all(self.member_views().get(p) == names for p in names), timeout=timeout)

    def _address(self, name: str) -> str:
        return f"{self.host}:{self.ports.get(name) or free_port()}"

    def _python(self, name: str, module: str, env: Mapping[str, str]) -> Process:
        pid_file = self.pid_dir / f"{name}.pid" if self.pid_dir else None
        return python_module(
            name, module, env, self.log_dir, self.base_env, pid_file=pid_file,
            detached=self.detached,
        )  # fmt: skip

    def _grpc_ready(self, proc: Process, address: str) -> None:
        wait_grpc_serving(proc, address, timeout=self.ready_timeout)

    def _http_ready(self, proc: Process, url: str) -> None:
        wait_http_ok(proc, url, timeout=self.ready_timeout)

    def start_redis(self, conf: Path | None = None, password: str = "") -> RedisServer:
        """`conf` and `password`: a Redis that requires a password (`make run` beyond loopback)."""
        also_bind = [self.netns.host_ip] if self.netns else []
        self.redis = RedisServer(
            self.data_dir / "redis",
            self.ports.get("redis"),
            *also_bind,
            host=self.host,
            conf=conf,
            password=password,
            log_path=self._redis_log,  # else in its data directory
            pid_file=self.pid_dir / "redis.pid" if self.pid_dir else None,
            detached=self.detached,
        )
        self.redis.start()
        return self.redis

    def start_redis_cluster(
        self, masters: int = MASTERS, full_coverage: bool = True
    ) -> RedisClusterNodes:
        """A Redis Cluster instead of one server; pods and the indexer get REDIS_CLUSTER=true."""
        self.redis_cluster = start_cluster(self.workdir, masters, full_coverage=full_coverage)
        self.redis_env = {**self.redis_env, "REDIS_CLUSTER": "true"}
        return self.redis_cluster

    def partition(self, pods: Iterable[str]) -> Netns:
        """Before start_redis: a network namespace for `pods` (they bind its inner address),
        the others and Redis on its host end; `self.netns.cut()` partitions them."""
        self.netns = Netns().create()
        self.partitioned = set(pods)
        return self.netns

    def start_model(self, token_delay_ms: int | None = 0, **extra_env: str) -> Process:
        """The dev model; `token_delay_ms=None` leaves its own default pace."""
        address = self._address("model")
        env = {"DEV_MODEL_PORT": address.rsplit(":", 1)[1], **extra_env}
        if token_delay_ms is not None:
            env["DEV_MODEL_TOKEN_DELAY_MS"] = str(token_delay_ms)
        self.model = self._python("model", "ai_service.dev_model", env)
        self.model.start()
        self.model_url = f"http://{address}/v1"
        self._http_ready(self.model, f"http://{address}/healthz")
        return self.model

    def start_local_model(self) -> Process:
        """llama-server with SmolLM2-135M in place of the dev model (deploy/stack/llama.py)."""
        address = self._address("model")
        self.model = llama_process(
            "model", address, self.log_dir / "model.log",
            pid_file=self.pid_dir / "model.pid" if self.pid_dir else None, detached=self.detached,
        )  # fmt: skip
        self.model.start()
        self.model_url = f"http://{address}/v1"
        self.model_ai_env = llama_ai_env(self.model_url)
        wait_http_ok(self.model, f"http://{address}/health", timeout=LLAMA_READY_TIMEOUT_S)
        return self.model

    def start_ai(self, **extra_env: str) -> Process:
        """On `model_url` (the dev model's, or one the caller set) when there is one; else
        the OpenAI settings of the environment."""
        self.ai_addr = self._address("ai")
        model = self.model_ai_env or {"OPENAI_BASE_URL": self.model_url, "OPENAI_API_KEY": "dev"}
        env = {
            "AI_PORT": self.ai_addr.rsplit(":", 1)[1],
            **(model if self.model_url else {}),
            **self.cluster_env,
            **extra_env,
        }
        self.ai = self._python("ai", "ai_service", env)
        self.ai.start()
        self._grpc_ready(self.ai, self.ai_addr)
        return self.ai

    def _session_env(self, pod_id: str, address: str, redis_url: str) -> dict[str, str]:
        return {
            "SESSION_PORT": address.rsplit(":", 1)[1],
            "REDIS_URL": redis_url or self.redis_url,
            "AI_SERVICE_ADDR": self.ai_addr or "127.0.0.1:1",
            "POD_ID": pod_id,
            "ATTACHMENTS_DIR": str(self.data_dir / "attachments"),
        }

    def start_session(self, **extra_env: str) -> Process:
        """The lone session service (POD_ID session-1); restarting it keeps its port."""
        self.session_addr = self.session_addr or self._address("session")
        env = {
            **self._session_env("session-1", self.session_addr, ""),
            **self.redis_env,  # REDIS_CLUSTER on a Redis Cluster, as for pods
            **self.cluster_env,
            **extra_env,
        }
        self.session = self._python("session", "session_service", env)
        self.session.start()
        self._grpc_ready(self.session, self.session_addr)
        return self.session

    def start_pod(self, pod_id: str, redis_url: str = "", **extra_env: str) -> Process:
        """A session-service pod of a cluster; restarting one keeps its port."""
        address = self.pod_addrs.get(pod_id) or self._address(pod_id)
        netns: dict[str, str] = {}
        if self.netns is not None:
            host = self.netns.ns_ip if pod_id in self.partitioned else self.netns.host_ip
            address = f"{host}:{address.rsplit(':', 1)[1]}"
            # a private test namespace: no Redis password
            netns = {"BIND_HOST": host, "ALLOW_INSECURE_NETWORK": "true"}
        env = {
            **self._session_env(pod_id, address, redis_url),
            **self.redis_env,
            **self.cluster_env,
            **netns,
            **extra_env,
        }
        pod = self._python(pod_id, "session_service", env)
        if self.netns is not None and pod_id in self.partitioned:
            pod.argv = self.netns.argv(*pod.argv)
        pod.start()
        self.pods[pod_id] = pod
        self.pod_addrs[pod_id] = address
        self._grpc_ready(pod, address)
        return pod

    def reserve_pod(self, pod_id: str) -> str:
        """Picks the address a pod will have, so a gateway can know it before it starts."""
        self.pod_addrs[pod_id] = self._address(pod_id)
        return self.pod_addrs[pod_id]

    def start_search(self, **extra_env: str) -> Process:
        """The search indexer (docs/search.md) on this stack's search.db; restarting it keeps
        its port and file."""
        self.search_addr = self.search_addr or self._address("search")
        env = {
            "SEARCH_PORT": self.search_addr.rsplit(":", 1)[1],
            "REDIS_URL": self.redis_url,
            "SEARCH_DB": str(self.data_dir / "search.db"),
            **self.redis_env,
            **extra_env,
        }
        self.search = self._python("search", "session_service.search", env)
        self.search.start()
        self._grpc_ready(self.search, self.search_addr)
        return self.search

    def start_gateway(self, session_addrs: str = "", **extra_env: str) -> Process:
        """In front of `session_addrs` (comma-separated; default: every session address)."""
        address = self._address("gateway")
        self.gateway_url = f"http://{address}"
        self.fanout_addr = self._address("fanout")
        env = {
            "GATEWAY_PORT": address.rsplit(":", 1)[1],
            "FANOUT_PORT": self.fanout_addr.rsplit(":", 1)[1],
            "SESSION_SERVICE_ADDR": session_addrs or ",".join(self.session_addrs),
            **self.cluster_env,
            **extra_env,
        }
        self.gateway = self._python("gateway", "gateway", env)
        self.gateway.start()
        self._http_ready(self.gateway, f"{self.gateway_url}/healthz")
        return self.gateway

    def start_envoy(
        self,
        origins: tuple[str, ...] = TEST_ORIGINS,
        sessions: list[str] | None = None,
        overrides: Mapping[str, int] | None = None,
    ) -> Process:
        """A real Envoy rendered from the committed config (deploy/envoy_config.py) in front of
        the gateway, `sessions` (default: every session address) and the indexer; `overrides`
        go to envoy_config.render (grpc_calls_per_ip_min, request_headers_timeout_s)."""
        listen = self._address("envoy")
        admin = self.ports.get("envoy-admin") or free_port()
        config = envoy_config.render(
            host_port(listen),
            admin,
            host_port(self.gateway_url.removeprefix("http://")),
            [host_port(a) for a in sessions or self.session_addrs],
            origins,
            host_port(self.search_addr) if self.search_addr else ("127.0.0.1", 1),
            fanout=host_port(self.fanout_addr) if self.fanout_addr else None,
            **(overrides or {}),
        )
        path = envoy_config.write(self.workdir / "envoy.yaml", config)
        pid_file = self.pid_dir / "envoy.pid" if self.pid_dir else None
        log = self.log_dir / "envoy.log"
        self.envoy = start_envoy(path, admin, log, self.ready_timeout, pid_file, self.detached)
        self.envoy_url = f"http://{listen}"
        return self.envoy

    def processes(self) -> list[Process]:
        """Every process started, in start order (a Redis Cluster's nodes aside)."""
        procs = [self.redis, self.model, self.ai, self.session, *self.pods.values()]
        procs += [self.search, self.gateway, self.envoy]
        return [p for p in procs if p is not None]

    def close(self) -> None:
        """Stops every process by PID, newest first; removes a partition's namespace."""
        try:
            for proc in reversed(self.processes()):
                proc.stop()
            if self.redis_cluster is not None:
                self.redis_cluster.stop()
        finally:
            if self.netns is not None:
                self.netns.delete()
