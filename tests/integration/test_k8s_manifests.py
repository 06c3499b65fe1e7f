"""The Kubernetes manifests (deploy/k8s, docs/kubernetes.md), proven without a cluster: the base
and the production overlay render (`kubectl kustomize`), every rendered object passes
`kubernetes-validate --strict` against Kubernetes 1.30, and the pods set what the services read
(tests/support/k8s_pods.py: env names, ports, probes, Secret files, Services, PDBs, addresses,
Envoy's upstreams). A change made in one place only fails here (the mutation test shows each
kind). `-s` prints the validation output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy import envoy_k8s
from deploy.stack.processes import ROOT
from session_service.config import Config as SessionConfig
from tests.integration.test_envoy import validate as envoy_validate
from tests.support.k8s_pods import addresses, pods, services
from tests.support.k8s_render import (
    KUBERNETES_VERSION,
    KUSTOMIZATIONS,
    Obj,
    load,
    named,
    pod_labels,
    pod_spec,
    render,
    selects,
    validate,
    workloads,
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: render(path) for name, path in KUSTOMIZATIONS.items()}


def problems(objects: list[Obj], root: Path, external_ok: bool) -> list[str]:
    return pods(objects, root) + services(objects) + addresses(objects, external_ok)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_passes_strict_schema_validation(
    name: str, rendered: dict[str, str]
) -> None:
    done = validate(rendered[name])
    where = KUSTOMIZATIONS[name].relative_to(ROOT)
    print(f"\n$ kubectl kustomize {where} | kubernetes-validate --strict -k {KUBERNETES_VERSION} -")
    print(done.stdout + done.stderr, end="")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = (done.stdout + done.stderr).count("passed for resource")
    assert passed == len(load(rendered[name])) > 10


def test_strict_validation_rejects_an_unknown_field(rendered: dict[str, str]) -> None:
    done = validate(rendered["base"].replace("readinessProbe:", "readinesProbe:", 1))
    assert done.returncode != 0
    assert "'readinesProbe' was unexpected" in done.stdout + done.stderr


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_set_what_the_services_read(
    name: str, rendered: dict[str, str], tmp_path: Path
) -> None:
    found = problems(load(rendered[name]), tmp_path, external_ok=name == "production")
    assert found == []


def _env_names_by_module(containers: list[Obj]) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for c in containers:
        command = c.get("command") or []
        if command[:2] == ["python", "-m"]:
            env = c.get("environment") or c.get("env") or {}
            found = env.keys() if isinstance(env, dict) else (e["name"] for e in env)
            names.setdefault(command[2], set()).update(found)
    return names


def test_pods_set_every_setting_docker_compose_sets(rendered: dict[str, str]) -> None:
    """A setting docker-compose.yml gives a service (the other real deployment) is given by
    the manifests too: one added there and forgotten here fails."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    wanted = _env_names_by_module(list(compose.values()))
    containers = [c for w in workloads(load(rendered["base"])) for c in pod_spec(w)["containers"]]
    have = _env_names_by_module(containers)
    missing = {m: sorted(names - have.get(m, set())) for m, names in wanted.items()}
    assert {m: names for m, names in missing.items() if names} == {}


def _container(objects: list[Obj], workload: str) -> Obj:
    [w] = [w for w in workloads(objects) if w["metadata"]["name"] == workload]
    return dict(pod_spec(w)["containers"][0])


def _set_env(objects: list[Obj], workload: str, name: str, value: str) -> None:
    [entry] = [e for e in _container(objects, workload)["env"] if e["name"] == name]
    entry["value"] = value


def _rename_env(objects: list[Obj], workload: str, name: str, new: str) -> None:
    [entry] = [e for e in _container(objects, workload)["env"] if e["name"] == name]
    entry["name"] = new


def _drop_secret_item(objects: list[Obj], key: str) -> None:
    spec = pod_spec(named(objects, "StatefulSet")["session"])
    [auth] = [v for v in spec["volumes"] if v["name"] == "auth"]
    auth["secret"]["items"] = [i for i in auth["secret"]["items"] if i["key"] != key]


def _envoy_host(objects: list[Obj], old: str, new: str) -> None:
    [config] = [c for n, c in named(objects, "ConfigMap").items() if n.startswith("envoy-config")]
    config["data"]["envoy.yaml"] = config["data"]["envoy.yaml"].replace(
        f"address: {old}\n", f"address: {new}\n"
    )


def _relabel(objects: list[Obj], kind: str, name: str) -> None:
    obj = named(objects, kind)[name]
    selector = obj["spec"]["selector"]
    selector = selector.get("matchLabels", selector)
    selector["app.kubernetes.io/name"] = "sessions"


MUTATIONS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "SESSION_PORT changed, not the container port": (
        lambda o: _set_env(o, "session", "SESSION_PORT", "50061"),
        "session/session: container ports [9101, 50051], session_service listens on [9101, 50061]",
    ),
    "GATEWAY_PORT misspelt": (
        lambda o: _rename_env(o, "gateway", "GATEWAY_PORT", "GATEWAY_PROT"),
        "gateway/gateway: GATEWAY_PROT: set, but gateway never reads it",
    ),
    "cluster-secret no longer mounted": (
        lambda o: _drop_secret_item(o, "cluster-secret"),
        "CLUSTER_SECRET_FILE=/auth/cluster-secret: no mounted Secret item is there",
    ),
    "AI_SERVICE_ADDR to a Service that is not there": (
        lambda o: _set_env(o, "session", "AI_SERVICE_ADDR", "ai-service:50052"),
        "AI_SERVICE_ADDR: ai-service:50052: no Service ai-service",
    ),
    "Envoy upstream renamed": (
        lambda o: _envoy_host(o, "search", "search-indexer"),
        "search: search-indexer:50053: no Service search-indexer",
    ),
    "Service selector off": (
        lambda o: _relabel(o, "Service", "session"),
        "Service session: selects no pods",
    ),
    "PDB selector off": (
        lambda o: _relabel(o, "PodDisruptionBudget", "session"),
        "PodDisruptionBudget session: selects [], not one workload",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_change_in_one_place_only_is_caught(
    mutation: str, rendered: dict[str, str], tmp_path: Path
) -> None:
    objects = copy.deepcopy(load(rendered["base"]))
    change, expected = MUTATIONS[mutation]
    change(objects)
    found = problems(objects, tmp_path, external_ok=False)
    print(f"\n{mutation}:", *found, sep="\n  ")
    assert any(expected in p for p in found), found


def test_the_envoy_config_is_the_committed_one_rendered_for_kubernetes(
    rendered: dict[str, str],
) -> None:
    assert envoy_k8s.OUTPUT.read_text() == envoy_k8s.text(), "run python -m deploy.envoy_k8s"
    done = envoy_validate(envoy_k8s.OUTPUT)
    assert done.returncode == 0, done.stderr[-2000:]
    objects = load(rendered["base"])
    [config] = [n for n in named(objects, "ConfigMap") if n.startswith("envoy-config")]
    envoy = named(objects, "Deployment")["envoy"]
    [volume] = [
        v for v in pod_spec(envoy)["volumes"] if v.get("configMap", {}).get("name") == config
    ]
    [mount] = [
        m for m in _container(objects, "envoy")["volumeMounts"] if m["name"] == volume["name"]
    ]
    command = _container(objects, "envoy")["command"]
    assert command[command.index("-c") + 1] == f"{mount['mountPath']}/envoy.yaml"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_session_pods_have_stable_names_and_drain_on_a_rolling_update(
    name: str, rendered: dict[str, str]
) -> None:
    objects = load(rendered[name])
    session = named(objects, "StatefulSet")["session"]
    spec, container = pod_spec(session), _container(objects, "session")
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    peers = named(objects, "Service")[session["spec"]["serviceName"]]["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert env["ADVERTISE_ADDR"]["value"].startswith(f"$(POD_ID).{session['spec']['serviceName']}:")
    assert session["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert "grpc" in container["readinessProbe"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain_s = SessionConfig().handoff_timeout_ms / 1000 + 5  # handoffs + the gRPC grace
    assert pause + drain_s < spec["terminationGracePeriodSeconds"]
    [pdb] = [
        p
        for p in named(objects, "PodDisruptionBudget").values()
        if selects(p["spec"]["selector"]["matchLabels"], pod_labels(session))
    ]
    assert pdb["spec"]["maxUnavailable"] == 1 < session["spec"]["replicas"]


def test_redis_keeps_every_acknowledged_write(rendered: dict[str, str]) -> None:
    base = load(rendered["base"])
    command = _container(base, "redis")["command"]
    assert command[:2] == ["redis-server", "/auth/redis.conf"]
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "always"
    production = load(rendered["production"])
    assert "redis" not in named(production, "StatefulSet")
    assert "dev-model" not in named(production, "Deployment")
    assert named(production, "ConfigMap")["durable-chat"]["data"]["REDIS_CLUSTER"] == "true"
    [key] = [e for e in _container(production, "ai")["env"] if e["name"] == "OPENAI_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["optional"] is False


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_containers_run_unprivileged_on_a_read_only_root(
    name: str, rendered: dict[str, str]
) -> None:
    for workload in workloads(load(rendered[name])):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert set(container["resources"]) == {"requests", "limits"}, where


def test_production_creates_its_namespace_first(rendered: dict[str, str]) -> None:
    """`kubectl apply -f -` of the rendered overlay makes the namespace before its objects."""
    objects = load(rendered["production"])
    assert objects[0]["kind"] == "Namespace"
    assert {o["metadata"].get("namespace") for o in objects[1:]} == {"durable-chat"}
