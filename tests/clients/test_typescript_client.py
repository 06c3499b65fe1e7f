"""clients/typescript's tests (node's test runner) against the real system through Envoy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from deploy.stack.waits import eventually
from tests.support.build_cache import cached
from tests.support.edge import running_edge
from tests.support.generations import KINDS

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
    """esbuild's node bundles of the client's tests (cached: tests/support/build_cache.py)."""
    for name in ("client", "restart"):
        subprocess.run(
            [
                ESBUILD,
                f"clients/typescript/test/{name}.test.ts",
                "--bundle",
                "--platform=node",
                "--format=esm",
                "--target=node20",
                f"--outfile={into / f'{name}.test.mjs'}",
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
    bundle = cached("ts-client-tests", BUNDLE_INPUTS, build_bundle) / "client.test.mjs"
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


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
def test_typescript_client_replaces_a_restarted_answer_across_an_owner_kill(
    own_stack: Stack, model_env: dict[str, str], ai_env: dict[str, str]
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    bundle = cached("ts-client-tests", BUNDLE_INPUTS, build_bundle) / "restart.test.mjs"
    spec = StackSpec(envoy=True, token_delay_ms=5, model_env=model_env, ai_env=ai_env)
    stack = start(own_stack, spec)
    kill_file = stack.workdir / "kill-now"
    env = {
        **os.environ,
        "DURABLECHAT_URL": stack.envoy_url,
        "DURABLECHAT_KILL_FILE": str(kill_file),
        "DURABLECHAT_RESTART": "1" if ai_env else "0",
    }
    with subprocess.Popen(
        [node, "--test", str(bundle)], env=env, stdout=subprocess.PIPE, text=True
    ) as test:
        try:
            eventually(kill_file.exists, timeout=60)
            assert stack.session is not None
            stack.session.kill9()
            stack.start_session()  # the same pod comes back
            out, _ = test.communicate(timeout=120)
        finally:
            if test.poll() is None:
                test.kill()
    assert test.returncode == 0, out[-3000:]
    assert "# pass 1" in out and "# fail 0" in out
