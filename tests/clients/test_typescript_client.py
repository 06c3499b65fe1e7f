"""clients/typescript's tests (node's test runner) against the real system through Envoy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.stack.processes import ROOT
from tests.support.build_cache import cached
from tests.support.edge import running_edge

pytestmark = pytest.mark.slow

ESBUILD = str(ROOT / "node_modules" / ".bin" / "esbuild")


BUNDLE_INPUTS = [
    "clients/typescript/src",
    "clients/typescript/test",
    "package.json",
    "node_modules/esbuild/package.json",
]
"""What the test bundle is built from: sources (with the generated stubs in src/gen), the
versions asked for and the esbuild that builds it."""


def build_bundle(into: Path) -> None:
    """esbuild's node bundle of the client's tests (cached: tests/support/build_cache.py)."""
    subprocess.run(
        [
            ESBUILD,
            "clients/typescript/test/client.test.ts",
            "--bundle",
            "--platform=node",
            "--format=esm",
            "--target=node20",
            f"--outfile={into / 'client.test.mjs'}",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_typescript_client_passes_its_node_tests(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    bundle = cached("ts-client-test", BUNDLE_INPUTS, build_bundle) / "client.test.mjs"
    with running_edge(tmp_path) as edge:
        done = subprocess.run(
            [node, "--test", str(bundle)],
            env={**os.environ, "DURABLECHAT_URL": edge.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# pass 2" in done.stdout and "# fail 0" in done.stdout
