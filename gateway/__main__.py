"""`python -m gateway`: read the environment, set up JSON logs, serve until SIGTERM."""

from __future__ import annotations

import resource
import sys

from common import event_loop
from common.config import ConfigError
from common.logs import setup_logging
from common.tracing import setup_tracing
from gateway.app import serve
from gateway.config import Config


def raise_open_files_limit() -> None:
    """Every WebSocket is a descriptor: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    try:
        cfg = Config.from_env()
        loop = event_loop.chosen()
    except ConfigError as exc:
        sys.exit(f"gateway: {exc}")
    setup_logging("gateway", cfg.log_level)
    raise_open_files_limit()
    stop_tracing = setup_tracing("gateway")
    try:
        event_loop.run(serve(cfg), loop)
    finally:
        stop_tracing()


if __name__ == "__main__":
    main()
