"""Entry point: `python -m ai_service`; a bad setting exits non-zero naming the variable."""

from __future__ import annotations

import logging
import sys

from ai_service.config import Config
from ai_service.server import serve
from common import event_loop
from common.config import ConfigError
from common.logs import setup_logging
from common.tracing import setup_tracing


def main() -> None:
    try:
        cfg = Config.from_env()
        loop = event_loop.chosen()
    except ConfigError as exc:
        sys.exit(f"ai_service: {exc}")
    setup_logging("ai_service", cfg.log_level)
    # The openai client's HTTP library logs every request at INFO; servicer logs say more.
    logging.getLogger("httpx2").setLevel(max(logging.WARNING, logging.getLogger().level))
    stop_tracing = setup_tracing("ai_service")
    try:
        event_loop.run(serve(cfg), loop)
    finally:
        stop_tracing()


if __name__ == "__main__":
    main()
