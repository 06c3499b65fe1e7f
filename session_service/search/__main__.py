"""Entry point: `python -m session_service.search`, the search indexer and SearchService
(docs/search.md); a bad setting exits non-zero naming the variable."""

from __future__ import annotations

import sys

from common import event_loop
from common.config import ConfigError
from common.logs import setup_logging
from session_service.search.config import SearchConfig
from session_service.search.server import serve


def main() -> None:
    try:
        cfg = SearchConfig.from_env()
        loop = event_loop.chosen()
    except ConfigError as exc:
        sys.exit(f"search: {exc}")
    setup_logging("search", cfg.log_level)
    event_loop.run(serve(cfg), loop)


if __name__ == "__main__":
    main()
