"""The grpcurl and buf curl commands in README.md, run as written (only the ports differ)
against the real services behind a real Envoy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge import running_edge
from tests.helpers import ROOT


def readme_commands() -> list[str]:
    """Every grpcurl / buf curl command of README's fenced bash blocks, continuations joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()
            if line.startswith(("grpcurl ", "node_modules/.bin/buf curl ")):
                commands.append(line)
    return commands


def test_the_readme_has_the_commands() -> None:
    commands = readme_commands()
    assert sum(c.startswith("grpcurl") for c in commands) >= 4
    assert sum("buf curl" in c for c in commands) >= 2


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with running_edge(tmp_path_factory.mktemp("readme")) as edge:
        yield edge.stack.session_addr, edge.url.removeprefix("http://")


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_works(system: tuple[str, str], command: str) -> None:
    session_addr, envoy_addr = system
    line = command.replace("127.0.0.1:50051", session_addr).replace("127.0.0.1:8000", envoy_addr)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-c", line],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    if "-max-time" in command:  # a stream cut off on purpose after showing the log
        assert "answer_ended" in done.stdout, output
        assert "DeadlineExceeded" in done.stderr, output
        return
    assert done.returncode == 0, output
    assert done.stdout.strip(), output
