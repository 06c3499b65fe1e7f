"""`python -m gateway`: read the environment, set up JSON logs, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from common.config import ConfigError
from common.logs import setup_logging
from gateway.app import serve
from gateway.config import Config


def main() -> None:
    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        sys.exit(f"gateway: {exc}")
    setup_logging("gateway", cfg.log_level)
    asyncio.run(serve(cfg))


if __name__ == "__main__":
    main()
