"""The gRPC metadata keys live in common/wire.py only, and the edge strips the pods-only ones."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from common import wire
from deploy import envoy_config

ROOT = Path(__file__).resolve().parents[2]
SERVICE_DIRS = ("common", "gateway", "session_service", "ai_service", "admin", "deploy")
KEYS = {v for k, v in vars(wire).items() if k.isupper() and isinstance(v, str)}


def _stripped(config: dict[str, Any]) -> Any:
    """The request headers the edge route removes."""
    listener = config["static_resources"]["listeners"][0]
    route = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    return route["request_headers_to_remove"]


def test_every_key_is_lower_case_and_ours_start_with_dc() -> None:
    assert all(k == k.lower() for k in KEYS)
    assert {k for k in KEYS if k.startswith("dc-")} >= set(wire.FROM_PODS_ONLY)


def test_the_committed_envoy_config_strips_exactly_the_pods_only_keys() -> None:
    committed = yaml.safe_load(envoy_config.TEMPLATE.read_text())
    assert _stripped(committed) == list(wire.FROM_PODS_ONLY)


def test_the_rendered_envoy_config_strips_the_pods_only_keys() -> None:
    local = ("127.0.0.1", 1)
    rendered = envoy_config.render(local, 2, local, [local])
    assert _stripped(rendered) == list(wire.FROM_PODS_ONLY)


def test_no_service_module_spells_a_metadata_key_itself() -> None:
    spelled = []
    for folder in SERVICE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "common" / "wire.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in KEYS:
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert spelled == []
