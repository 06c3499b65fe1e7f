"""`python -m session_service`: read config, set up logs, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from common import event_loop
from common.config import ConfigError
from common.logs import setup_logging
from common.tracing import setup_tracing
from session_service.config import Config
from session_service.server import SessionServer
from session_service.store.durability import NotDurable

logger = logging.getLogger("session_service")

EXIT_NOT_DURABLE = 78
"""The exit code of a pod that refused a Redis that does not fsync acknowledged writes
(EX_CONFIG of sysexits.h: a configuration error, not a crash to restart quickly)."""


async def serve(cfg: Config) -> None:
    server = SessionServer(cfg)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    try:
        cfg = Config.from_env()
        loop = event_loop.chosen()
    except ConfigError as exc:
        sys.exit(f"session_service: {exc}")
    setup_logging("session", cfg.log_level, {"pod_id": cfg.pod_id})
    stop_tracing = setup_tracing("session_service")
    try:
        event_loop.run(serve(cfg), loop)
    except NotDurable as exc:
        logger.critical("refusing to serve: %s", exc)
        sys.exit(EXIT_NOT_DURABLE)
    finally:
        stop_tracing()


if __name__ == "__main__":
    main()
