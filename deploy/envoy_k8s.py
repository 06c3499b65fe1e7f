"""Renders deploy/k8s/base/envoy/envoy.yaml, the Envoy config of the Kubernetes manifests, from
the committed one (deploy/envoy_config.py): same routes and filters, with the upstreams set to
the Kubernetes Services of deploy/k8s/base:

    python -m deploy.envoy_k8s        (rewrites the file; tests/integration/test_k8s_manifests.py
                                       fails while the committed copy differs)

- `session`: the headless Service of the session pods' StatefulSet (ready pods only: STRICT_DNS
  resolves it to every ready pod and Envoy spreads calls over them; a draining pod is not ready,
  so it drops out while it hands its sessions off);
- `gateway` (HTTP 8080, gRPC fan-out 8081) and `search` (50053): headless too, for the same reason.

Short names: every object is in one namespace; the pod's resolv.conf search list completes them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from deploy import envoy_config

OUTPUT = Path(__file__).resolve().parent / "k8s" / "base" / "envoy" / "envoy.yaml"
LISTEN_PORT = 8000
ADMIN_PORT = 9901
GATEWAY = ("gateway", 8080)
FANOUT = ("gateway", 8081)
SESSION = ("session", 50051)
SEARCH = ("search", 50053)
HEADER = (
    "# Rendered by `python -m deploy.envoy_k8s` from deploy/envoy/envoy.yaml: do not edit.\n"
    "# The Kubernetes Envoy (deploy/k8s/base): upstreams are the Services of the manifests.\n"
)


def render() -> dict[str, Any]:
    return envoy_config.render(
        ("0.0.0.0", LISTEN_PORT),
        ADMIN_PORT,
        GATEWAY,
        [SESSION],
        search=SEARCH,
        fanout=FANOUT,
    )


def text() -> str:
    return HEADER + yaml.safe_dump(render(), sort_keys=False)


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else OUTPUT
    path.write_text(text())
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
