"""Do the rendered manifests set what the services read? Each check returns the problems it
found, one line each ([] when consistent), so a test can also show that a change made in one
place only is caught.

- Every container of the project's image runs `python -m <module>`; that module's own config
  loader (`Config.from_env` and friends) is run on the container's environment as Kubernetes
  would give it (values, ConfigMap keys, the pod's name, Secret keys) through a Mapping that
  records every name read: each name the manifest sets must be one of them, and the loader
  must accept the values (its start-up checks included: a password, a cluster key).
- Secret files: every *_FILE setting must name a file a mounted Secret item provides (the
  loaders read those files, from a copy of the pod's mounts under a temporary directory).
  The Secret keys are the files deploy/make_secret.py writes for docker-compose.yml.
- Ports: the container ports are exactly the ports the loaded config listens on; gRPC probes
  go to a port serving the gRPC health service, HTTP probes to the service's health path.
- Services select pods and target their ports; PodDisruptionBudgets select one workload;
  every in-cluster address (env and Envoy's upstream clusters) names a Service and its port.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ai_service.config import Config as AiConfig
from ai_service.dev_model import DevModelConfig
from common.config import ConfigError
from deploy.stack.processes import ROOT
from gateway.config import Config as GatewayConfig
from session_service.config import Config as SessionConfig
from session_service.search.config import SearchConfig
from tests.support.k8s_render import (
    Obj,
    container_ports,
    named,
    pod_labels,
    pod_names,
    pod_spec,
    port_number,
    selects,
    workloads,
)

IMAGE = "durable-chat"


@dataclass(frozen=True)
class Reader:
    """How one service reads its settings, and what it then listens on."""

    load: Callable[[Mapping[str, str]], Any]
    ports: Callable[[Any], set[int]]
    grpc_health: bool = False
    """Serves grpc.health.v1 on `config.port`."""
    http_health: str = ""
    """The HTTP health path on `config.port`."""


READERS = {
    "session_service": Reader(
        SessionConfig.from_env, lambda c: {c.port, c.metrics_port}, grpc_health=True
    ),
    "session_service.search": Reader(SearchConfig.from_env, lambda c: {c.port}, grpc_health=True),
    "ai_service": Reader(AiConfig.from_env, lambda c: {c.port, c.metrics_port}, grpc_health=True),
    "gateway": Reader(
        GatewayConfig.from_env, lambda c: {c.port, c.fanout_port}, http_health="/healthz"
    ),
    "ai_service.dev_model": Reader(
        DevModelConfig.from_env, lambda c: {c.port}, http_health="/healthz"
    ),
}
WRITABLE_PATHS = ("ATTACHMENTS_DIR", "SEARCH_DB")
"""Settings naming where a service writes: under a writable volume (the root fs is read-only)."""
ADDRESS_SETTINGS = ("ADDR", "REDIS_URL", "OPENAI_BASE_URL")
"""Settings whose name ends so hold an address (host:port or a URL)."""


def secret_keys() -> set[str]:
    """The files docker-compose.yml's `auth-secret` job writes (deploy/make_secret.py): the keys
    of the Secret durable-chat-auth made from them (docs/kubernetes.md)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["auth-secret"]["command"]
    return {Path(arg).name for arg in command if arg.startswith("/auth/")}


SECRETS = {"durable-chat-auth": secret_keys(), "model-api": {"api-key"}}


class Recording(Mapping[str, str]):
    """An environment that remembers every name asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _env(c: Obj, pod: str, objects: list[Obj], out: list[str]) -> dict[str, str]:
    maps = named(objects, "ConfigMap")
    env: dict[str, str] = {}
    for item in c.get("env", []):
        name, source = item["name"], item.get("valueFrom", {})
        if "value" in item:
            env[name] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), item["value"])
        elif "fieldRef" in source and source["fieldRef"]["fieldPath"] == "metadata.name":
            env[name] = pod
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = maps.get(ref["name"], {}).get("data", {}).get(ref["key"])
            if value is None:
                out.append(f"{name}: ConfigMap {ref['name']} has no key {ref['key']}")
            env[name] = value or ""
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref["key"] not in SECRETS.get(ref["name"], set()):
                out.append(f"{name}: Secret {ref['name']} has no key {ref['key']}")
            env[name] = "sk-" + "0" * 40
        else:
            out.append(f"{name}: a source this check does not know: {source}")
    return env


def _mounts(c: Obj, spec: Obj, root: Path, out: list[str]) -> list[tuple[str, bool]]:
    """Writes each mounted Secret item under `root`; (mountPath, writable) of every mount."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = []
    for m in c.get("volumeMounts", []):
        mounts.append((m["mountPath"], not m.get("readOnly", False)))
        secret = volumes.get(m["name"], {}).get("secret")
        if secret is None:
            continue
        for item in secret.get("items", []):
            if item["key"] not in SECRETS.get(secret["secretName"], set()):
                out.append(f"volume {m['name']}: Secret {secret['secretName']} has no key {item}")
            path = root / m["mountPath"].lstrip("/") / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("requirepass x\n" if item["key"] == "redis.conf" else "ab" * 32)
    return mounts


def _under(path: str, mounts: list[tuple[str, bool]], writable: bool) -> bool:
    return any(
        (path + "/").startswith(m.rstrip("/") + "/") and (w or not writable) for m, w in mounts
    )


def container(workload: Obj, c: Obj, objects: list[Obj], root: Path) -> list[str]:
    """The problems of one container of the project's image."""
    out: list[str] = []
    where = f"{workload['metadata']['name']}/{c['name']}"
    module = c["command"][2] if c.get("command", [])[:2] == ["python", "-m"] else ""
    reader = READERS.get(module)
    if reader is None:
        return [f"{where}: runs {c.get('command')}, not one of {sorted(READERS)}"]
    spec = pod_spec(workload)
    env = _env(c, pod_names(workload)[0], objects, out)
    mounts = _mounts(c, spec, root, out)
    for name, value in list(env.items()):
        if name.endswith("_FILE") and not (root / value.lstrip("/")).is_file():
            out.append(f"{name}={value}: no mounted Secret item is there")
        if name in WRITABLE_PATHS and not _under(value, mounts, writable=True):
            out.append(f"{name}={value}: not on a writable volume")
        if value.startswith("/") and _under(value, mounts, writable=False):
            env[name] = str(root / value.lstrip("/"))
    recording = Recording(env)
    try:
        cfg = reader.load(recording)
    except (ConfigError, ValueError, OSError) as exc:
        return [f"{where}: {p}" for p in [*out, f"{module} refuses its environment: {exc}"]]
    out += [
        f"{name}: set, but {module} never reads it" for name in sorted(set(env) - recording.read)
    ]
    ports = container_ports(spec)
    if set(ports.values()) != reader.ports(cfg):
        listens = sorted(reader.ports(cfg))
        out.append(f"container ports {sorted(ports.values())}, {module} listens on {listens}")
    if cfg.bind_host in ("127.0.0.1", "localhost", "::1"):
        out.append(f"BIND_HOST={cfg.bind_host}: the kubelet and other pods cannot reach it")
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        out += [f"{kind}: {p}" for p in _probe(c.get(kind), reader, cfg.port, ports)]
    return [f"{where}: {p}" for p in out]


def _probe(probe: Obj | None, reader: Reader, port: int, ports: dict[str, int]) -> list[str]:
    if probe is None:
        return []
    if "grpc" in probe:
        target = probe["grpc"]["port"]
        if not (reader.grpc_health and target == port):
            return [f"gRPC health on {target}; the service serves it on {port}"]
    if "httpGet" in probe:
        get = probe["httpGet"]
        if (port_number(get["port"], ports), get["path"]) != (port, reader.http_health):
            return [f"GET {get['path']} on {get['port']}; serves {reader.http_health} on {port}"]
    if "tcpSocket" in probe and port_number(probe["tcpSocket"]["port"], ports) is None:
        return [f"TCP port {probe['tcpSocket']['port']} is not a container port"]
    return []


def pods(objects: list[Obj], root: Path) -> list[str]:
    """Every container of the project's image (checked above)."""
    out = []
    for w in workloads(objects):
        for c in pod_spec(w)["containers"]:
            if c["image"].split(":")[0].rsplit("/", 1)[-1] == IMAGE:
                out += container(w, c, objects, root / w["metadata"]["name"] / c["name"])
    return out


def services(objects: list[Obj]) -> list[str]:
    out = []
    for name, service in named(objects, "Service").items():
        selector = service["spec"].get("selector", {})
        chosen = [w for w in workloads(objects) if selects(selector, pod_labels(w))]
        if not chosen:
            out.append(f"Service {name}: selects no pods ({selector})")
        for w in chosen:
            ports = container_ports(pod_spec(w))
            for p in service["spec"]["ports"]:
                if port_number(p.get("targetPort", p["port"]), ports) is None:
                    out.append(f"Service {name}: {p} is not a port of {w['metadata']['name']}")
    for name, pdb in named(objects, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        chosen = [
            w["metadata"]["name"] for w in workloads(objects) if selects(selector, pod_labels(w))
        ]
        if len(chosen) != 1:
            out.append(f"PodDisruptionBudget {name}: selects {chosen}, not one workload")
    return out


def resolves(address: str, objects: list[Obj], external_ok: bool) -> str:
    """ "" when `address` (host:port, dns:///host:port or a URL) is a Service and one of its
    ports, or <pod>.<its StatefulSet's headless Service>; else the problem."""
    address = address.removeprefix("dns:///")
    parts = urlsplit(address if "://" in address else f"//{address}")
    host, port = parts.hostname or "", parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    labels = host.split(".")
    if len(labels) > 2:
        return "" if external_ok else f"{address}: outside the manifests"
    service = named(objects, "Service").get(labels[-1])
    if service is None:
        return f"{address}: no Service {labels[-1]}"
    if port not in {p["port"] for p in service["spec"]["ports"]}:
        return f"{address}: Service {labels[-1]} has no port {port}"
    if len(labels) == 2:
        sets = [w for w in workloads(objects) if w["spec"].get("serviceName") == labels[1]]
        if not any(labels[0] in pod_names(w) for w in sets):
            return f"{address}: {labels[0]} is no pod of a StatefulSet of Service {labels[1]}"
    return ""


def addresses(objects: list[Obj], external_ok: bool) -> list[str]:
    """Every address setting of every container, and Envoy's upstream clusters."""
    found: list[tuple[str, str]] = []
    for w in workloads(objects):
        for c in pod_spec(w)["containers"]:
            env = _env(c, pod_names(w)[0], objects, [])
            found += [(k, v) for k, v in env.items() if k.endswith(ADDRESS_SETTINGS) and v]
    for name, config in named(objects, "ConfigMap").items():
        if "envoy.yaml" in config.get("data", {}):
            envoy = yaml.safe_load(config["data"]["envoy.yaml"])
            for cluster in envoy["static_resources"]["clusters"]:
                for group in cluster["load_assignment"]["endpoints"]:
                    for e in group["lb_endpoints"]:
                        a = e["endpoint"]["address"]["socket_address"]
                        found.append(
                            (f"{name} {cluster['name']}", f"{a['address']}:{a['port_value']}")
                        )
    problems = [(k, resolves(v, objects, external_ok)) for k, v in found]
    return [f"{k}: {p}" for k, p in problems if p]
