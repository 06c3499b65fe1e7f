"""The session service's folders are layers and every import points down (docs/design.md "Layers").

From the top: the wiring (server, servicer, config, the search indexer's own server), each
feature's RPC class (features/<f>/rpc.py), the shared RPC plumbing (rpc/), the cluster and each
feature's operations (cluster/, features/<f>/), the live owner (actor/), Redis (store/), the pure
model (log/), and the leaves every layer may use (errors, limits, metrics). A module may import its
own folder and any layer below, never a layer above, never a sibling feature. The actor reaches a
feature it must trigger (the auto title after an answer) through a hook given at construction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import session_service

ROOT = Path(session_service.__file__).parent
PACKAGE = "session_service"
WIRING, FEATURE_RPC, RPC, CLUSTER, ACTOR, STORE, LOG, LEAF = range(8)
FOLDERS = {"rpc": RPC, "cluster": CLUSTER, "actor": ACTOR, "store": STORE, "log": LOG}
FOLDERS |= {"search": WIRING}
LEAVES = {"errors", "limits", "metrics"}
SIDEWAYS = {("features.branches.rpc", "features.transfer.rpc")}
"""ForkSession is an export into a new session, so it calls the transfer feature's RPCs."""


def place(module: str) -> tuple[int, str]:
    """(layer, folder) of a module named relative to the package."""
    parts = module.split(".")
    if parts[0] == "features":
        feature = ".".join(parts[:2])
        return (FEATURE_RPC if parts[-1] == "rpc" else CLUSTER), feature
    if parts[0] in FOLDERS:
        return FOLDERS[parts[0]], parts[0]
    return (LEAF, parts[0]) if parts[0] in LEAVES else (WIRING, "")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                below = node.module.removeprefix(PACKAGE + ".")
                found.update(
                    f"{below}.{a.name}" if (ROOT / below / f"{a.name}.py").exists() else below
                    for a in node.names
                )
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE)
            )
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    layer, folder = place(name)
    wrong = []
    for target in sorted(imports(path)):
        their_layer, their_folder = place(target)
        if (name, target) in SIDEWAYS or their_folder == folder:
            continue
        sibling = folder.startswith("features.") and their_folder.startswith("features.")
        if their_layer > layer and not sibling:
            continue
        if their_layer == LEAF and layer == LEAF:
            continue
        wrong.append(target)
    assert wrong == [], f"{name} (layer {layer}) imports upward or sideways: {wrong}"


def test_the_table_knows_every_folder() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(FOLDERS) | {"features"}
