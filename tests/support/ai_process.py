"""An AI service process in front of an OpenAI-compatible model (a fake of tests/support/fakes),
for tests of the AI service alone: on a free port, ready when its gRPC health says so, stopped
afterwards even when the test fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from deploy.stack.ports import free_port
from deploy.stack.processes import python_module, wait_grpc_serving


@contextlib.contextmanager
def ai_service(model_url: str, workdir: Path, **env: str) -> Iterator[str]:
    """Yields the address of an AI service that calls `model_url`, with `env` on top."""
    addr = f"127.0.0.1:{free_port()}"
    full = {
        "AI_PORT": addr.rsplit(":", 1)[1],
        "OPENAI_BASE_URL": model_url,
        "OPENAI_API_KEY": "test-key",
        **env,
    }
    proc = python_module("ai", "ai_service", full, workdir)
    try:
        proc.start()
        wait_grpc_serving(proc, addr)
        yield addr
    finally:
        proc.stop()
