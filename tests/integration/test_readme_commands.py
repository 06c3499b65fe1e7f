"""The durablechat chat, curl, grpcurl and buf curl commands in README.md, run as written (only
the ports differ) against the real services behind a real Envoy, with access control on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack.processes import ROOT
from tests.support.edge import Edge, running_edge

RUN_AS_WRITTEN = ("grpcurl ", "node_modules/.bin/buf curl ", "durablechat chat ", "curl ")
NOT_RUN = ("curl -sN ",)
CHECKED_ROUTES = ("/api/threads", "/api/search", "/feedback", "/edit", "/regenerate", "/attach")
"""curl lines of the chat features: their JSON must not be an error (curl exits 0 on a 4xx)."""
"""Streams without an end (SSE) are not run; `durablechat chat` without --send is interactive."""


def readme_commands() -> list[str]:
    """Every grpcurl / buf curl command of README's fenced bash blocks, continuations joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()
            if line.startswith(RUN_AS_WRITTEN) and not line.startswith(NOT_RUN):
                commands.append(line)
    return commands


def test_the_readme_has_the_commands() -> None:
    commands = readme_commands()
    assert sum(c.startswith("grpcurl") for c in commands) >= 4
    assert sum("buf curl" in c for c in commands) >= 2
    assert any(c.startswith("durablechat chat") and "--send" in c for c in commands)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("readme"), secure=True) as edge:
        yield edge


@pytest.mark.parametrize(
    "command", [c for c in readme_commands() if "durablechat chat" not in c or "--send" in c]
)
def test_readme_command_works(system: Edge, command: str) -> None:
    """As `make run` (access control on), with TOKEN set as README's `export TOKEN=` line does."""
    session_addr, envoy_addr = system.stack.session_addr, system.url.removeprefix("http://")
    line = command.replace("127.0.0.1:50051", session_addr).replace("127.0.0.1:8000", envoy_addr)
    line = line.replace("localhost:8000", envoy_addr)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-c", line],
        cwd=ROOT,
        env={
            **os.environ,
            "PATH": path,
            "TOKEN": system.token("ann"),
            "DURABLECHAT_URL": system.url,
        },
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
    if command.startswith("curl") and any(route in command for route in CHECKED_ROUTES):
        assert '"error"' not in done.stdout, output
    if command.startswith("durablechat chat"):
        assert done.stdout.splitlines()[0] == "[LOADING]", output
        assert done.stdout.splitlines()[-1] == "[DONE]", output
