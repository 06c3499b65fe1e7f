"""Renders deploy/envoy/envoy.yaml (the compose topology) for other addresses: `make run` and
the tests run the same routes and filters in front of local processes.

Only addresses change: the listener, the admin port, and the endpoints of the `session`,
`gateway` and `fanout` clusters; and the CORS origins when given; tests may also shrink the
per-IP gRPC limit and the request-head timeout to see them act. Everything else is the
committed file, so what the tests prove about the local Envoy holds for compose's. The request
headers stripped from clients are the pods-only metadata keys of common/wire.py, written from
there (the committed file lists the same, checked by tests/unit/test_wire.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from common.wire import FROM_PODS_ONLY

TEMPLATE = Path(__file__).resolve().parent / "envoy" / "envoy.yaml"

Address = tuple[str, int]
LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def render(
    listen: Address,
    admin_port: int,
    gateway: Address,
    sessions: list[Address],
    cors_origins: tuple[str, ...] = (),
    search: Address = ("127.0.0.1", 1),
    grpc_calls_per_ip_min: int = 0,
    request_headers_timeout_s: int = 0,
    fanout: Address | None = None,
) -> dict[str, Any]:
    """The Envoy config with these addresses; `sessions` is one host:port per session pod;
    `cors_origins` (when given) replace the committed list of gRPC-web CORS origins; `search`
    is the search indexer (none: its calls fail UNAVAILABLE). When given (> 0),
    `grpc_calls_per_ip_min` replaces the per-client-IP gRPC limit (a bucket of that many calls,
    refilled a minute later) and `request_headers_timeout_s` the request-head timeout.
    `fanout` is the gateway's gRPC fan-out (FANOUT_PORT), which serves Subscribe; without one,
    Subscribe goes to the session pods as every other SessionService call."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    config["admin"]["address"] = _socket("127.0.0.1", admin_port)
    resources = config["static_resources"]
    listener = resources["listeners"][0]
    listener["address"] = _socket(*listen)
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["request_headers_to_remove"] = list(FROM_PODS_ONLY)
    if grpc_calls_per_ip_min:
        [limit] = [f for f in manager["http_filters"] if f["name"] == LOCAL_RATELIMIT]
        for descriptor in limit["typed_config"]["descriptors"]:
            descriptor["token_bucket"] = {
                "max_tokens": grpc_calls_per_ip_min,
                "tokens_per_fill": grpc_calls_per_ip_min,
                "fill_interval": "60s",
            }
    if request_headers_timeout_s:
        manager["request_headers_timeout"] = f"{request_headers_timeout_s}s"
    if cors_origins:
        host = manager["route_config"]["virtual_hosts"][0]
        policy = host["typed_per_filter_config"]["envoy.filters.http.cors"]
        policy["allow_origin_string_match"] = [{"exact": o} for o in cors_origins]
    endpoints = {
        "gateway": [gateway],
        "session": sessions,
        "search": [search],
        "fanout": [fanout] if fanout else sessions,
    }
    for cluster in resources["clusters"]:
        cluster["load_assignment"]["endpoints"] = [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": _socket(h, p)}} for h, p in endpoints[cluster["name"]]
                ]
            }
        ]
    return config


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
