"""A real model for tests: llama.cpp's `llama-server` serving SmolLM2-135M-Instruct behind the
OpenAI chat API (deploy/stack/llama.py starts it; deploy/install_real_model.sh installs it).

`llama_server(workdir, prefill=...)` starts it on a free loopback port, waits until its /health
answers 200 (the model is loaded) and stops it by PID afterwards, also when the start or the
test fails. See deploy/stack/llama.py for what `prefill` means.

When the binary or the model is missing the test is skipped with the command that installs
them, unless CI=true: then it fails (CI must run it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.stack.llama import ALIAS, INSTALL, READY_TIMEOUT_S, argv, binary_path, model_path
from deploy.stack.ports import free_port
from deploy.stack.processes import Process, wait_http_ok

__all__ = ["ALIAS", "LlamaServer", "argv", "binary_path", "llama_server", "model_path", "require"]


@dataclass(frozen=True)
class LlamaServer:
    process: Process
    url: str
    """The OpenAI-protocol base URL (…/v1): the AI service's OPENAI_BASE_URL."""
    prefill: bool


def require() -> tuple[Path, Path]:
    """The binary and the model; skips (fails when CI=true) if either is missing."""
    binary, model = binary_path(), model_path()
    if binary is not None and model is not None:
        return binary, model
    missing = "llama-server" if binary is None else "the SmolLM2 model"
    why = f"{missing} is not installed: run {INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


@contextlib.contextmanager
def llama_server(workdir: Path, *, prefill: bool = True) -> Iterator[LlamaServer]:
    """A running llama-server (see the module docstring), stopped afterwards."""
    binary, model = require()
    port = free_port()
    name = "llama-prefill" if prefill else "llama-restart"
    command = argv(binary, model, "127.0.0.1", port, prefill=prefill)
    process = Process(name, command, os.environ, workdir / f"{name}.log")
    try:
        process.start()
        wait_http_ok(process, f"http://127.0.0.1:{port}/health", timeout=READY_TIMEOUT_S)
        yield LlamaServer(process, f"http://127.0.0.1:{port}/v1", prefill)
    finally:
        process.stop()
