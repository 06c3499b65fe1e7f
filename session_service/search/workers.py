"""Runs the search database's work in threads, so SQLite never blocks the event loop that serves
health checks, searches and the indexer's Redis reads (docs/search.md).

Contract:
- Writes (the indexer's batches, purges) run one at a time in ONE writer thread on the writer
  connection, in the order they were submitted; a write is a function given the SearchIndex and
  run inside one transaction (committed if it returns, rolled back if it raises).
- Searches run in up to `readers` threads, each with its own read connection (WAL: a search
  sees the last committed write and never waits for the writer, nor the writer for it). More
  concurrent searches wait their turn in the pool's queue; each is bounded in time by its
  reader's budget (index.py, SEARCH_QUERY_MS).
- `close` waits for the running work to end, then closes every connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from session_service.search.index import Hit, SearchIndex, SearchReader

T = TypeVar("T")


class IndexWorkers:
    def __init__(
        self, path: Path | str, readers: int, min_term_chars: int, query_budget_ms: int
    ) -> None:
        self._path = path
        self._min_term_chars = min_term_chars
        self._budget_ms = query_budget_ms
        self.index = SearchIndex(path)
        """The writer connection; touch it only through `write`."""
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="search-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="search-read")
        self._local = threading.local()
        self._opened: list[SearchReader] = []
        self._lock = threading.Lock()

    async def write(self, work: Callable[[SearchIndex], T]) -> T:
        """Runs `work(index)` in one transaction in the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._transaction, work)

    def _transaction(self, work: Callable[[SearchIndex], T]) -> T:
        self.index.begin()
        try:
            result = work(self.index)
        except BaseException:
            self.index.rollback()
            raise
        self.index.commit()
        return result

    async def read(self, work: Callable[[SearchIndex], T]) -> T:
        """Runs `work(index)` (reads only, no transaction) in the writer thread, so it sees
        every write submitted before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, work, self.index)

    async def search(
        self, user: str, query: str, session_id: str, limit: int, offset: int
    ) -> list[Hit]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self._search, user, query, session_id, limit, offset
        )

    def _search(self, user: str, query: str, session_id: str, limit: int, offset: int) -> list[Hit]:
        reader: SearchReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = SearchReader(self._path, self._min_term_chars, self._budget_ms)
            self._local.reader = reader
            with self._lock:
                self._opened.append(reader)
        return reader.search(user, query, session_id, limit, offset)

    def close(self) -> None:
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True, cancel_futures=True)
        for reader in self._opened:
            reader.close()
        self.index.close()
