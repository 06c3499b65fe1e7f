"""The actor is the layer features build on: features import it, never the reverse. A feature the
actor must trigger (the auto title after an answer) is a hook given to it at construction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import session_service

ROOT = Path(session_service.__file__).parent
ABOVE_THE_ACTOR = (
    "session_service.features",
    "session_service.cluster",
    "session_service.rpc",
    "session_service.servicer",
    "session_service.server",
)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "actor").glob("*.py")), ids=lambda p: p.name)
def test_actor_imports_nothing_above_it(path: Path) -> None:
    above = sorted(m for m in imported_modules(path) if m.startswith(ABOVE_THE_ACTOR))
    assert above == []


@pytest.mark.parametrize(
    "path", sorted((ROOT / "features").glob("*/ops.py")), ids=lambda p: p.parent.name
)
def test_feature_ops_import_no_rpc(path: Path) -> None:
    above = sorted(
        m for m in imported_modules(path) if m.endswith(".rpc") or m.startswith(ABOVE_THE_ACTOR[1:])
    )
    assert above == []
