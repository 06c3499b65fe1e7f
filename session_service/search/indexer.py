"""Feeds the search database from Redis (docs/search.md): hints from the `dc:search:feed`
stream name sessions; each session's log is read from the last seq indexed. Rebuilds from every
session log when the database is new. Its Redis reads: store/search_source.py.

A hint is acknowledged only after its session's rows are committed: a crash repeats work, never
loses it. Reading a log is idempotent (rows go in once: by seq, from the indexed position).
A session whose log is shorter than what was indexed, or whose creation time changed, was
purged (purge.py hints it): its rows, members and thread row are deleted. Every SQLite call runs
in the writer thread (workers.py), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from functools import partial

from session_service.log.events import (
    AccessChanged,
    AnswerEnded,
    MessageAppended,
    ThreadChanged,
    acted_by,
    decode,
)
from session_service.search.index import SearchIndex
from session_service.search.workers import IndexWorkers
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.search_source import SearchSource

logger = logging.getLogger(__name__)

READ_CHUNK = 1000
"""Log entries read per round trip."""
HINTS_PER_READ = 100
BLOCK_MS = 1000


class Indexer:
    def __init__(self, client: RedisClient, workers: IndexWorkers, group: str) -> None:
        self._source = SearchSource(client)
        self._workers = workers
        self._group = group
        self.ready = asyncio.Event()
        """Set once the first catch-up (and rebuild, if any) is done."""

    async def index_session(self, session_id: str) -> int:
        """Indexes what is new in one session's log; returns how many entries were read."""
        start, indexed_created = await self._workers.read(lambda i: i.position(session_id))
        length, created = await self._source.log_state(session_id)
        if start and (length < start or created != indexed_created):
            # Purged (the id may name a new session now): nothing of the old one may remain.
            await self._workers.write(lambda i: i.forget(session_id))
            start = 0
        read = 0
        while start + read < length:
            first = start + read
            raw = await self._source.read_log(session_id, first, READ_CHUNK)
            if not raw:
                break
            await self._workers.write(
                partial(_store, session_id=session_id, first=first, entries=raw, created=created)
            )
            read += len(raw)
        return read

    async def rebuild(self) -> int:
        """Indexes every session log in Redis; returns how many sessions were read."""
        sessions = 0
        async for session_id in self._source.session_ids():
            await self.index_session(session_id)
            sessions += 1
        return sessions

    async def run_forever(self, rebuild: bool) -> None:
        """Catches up (rebuilding first when asked), then follows the feed until cancelled.
        Redis errors are logged and retried."""
        while True:
            try:
                await self._source.ensure_group(self._group)
                if rebuild:
                    count = await self.rebuild()
                    logger.info("search index rebuilt", extra={"sessions": count})
                    rebuild = False
                await self._follow()
            except REDIS_ERRORS as exc:
                logger.warning("search indexer waiting for redis: %s", exc)
                await asyncio.sleep(1.0)
            except sqlite3.Error as exc:  # e.g. locked by another process: try again
                logger.warning("search indexer waiting for its database: %s", exc)
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        cursor = "0"  # first what this consumer was given but did not acknowledge
        while True:
            hints = await self._source.read_hints(
                self._group,
                "indexer",
                cursor,
                HINTS_PER_READ,
                BLOCK_MS if cursor == ">" else None,
            )
            if not hints:
                self.ready.set()
                cursor = ">"
                continue
            sessions = {f[b"s"].decode() for _, f in hints if f and b"s" in f}
            for session_id in sorted(sessions):
                await self.index_session(session_id)
            await self._source.ack(self._group, [hint_id for hint_id, _ in hints])


def _store(
    index: SearchIndex, session_id: str, first: int, entries: list[bytes], created: int
) -> None:
    """Stores one chunk of a session's log (in the writer thread, inside its transaction)."""
    deleted: bool | None = None
    title: str | None = None
    for offset, raw in enumerate(entries):
        event = decode(first + offset + 1, raw)
        if isinstance(event, MessageAppended | AnswerEnded):
            m = event.message
            if m.content:
                author = acted_by(m.user, m.imported_by)  # an import's: its importer
                index.add_message(session_id, m.seq, m.role, author, m.content, m.ts_ms)
        elif isinstance(event, AccessChanged):
            if event.user and not event.invite_hash:
                index.set_member(session_id, event.user, bool(event.role))
        elif isinstance(event, ThreadChanged):
            if event.title:
                title = event.title
            if event.deleted or event.restored:
                deleted = event.deleted
    index.set_thread(session_id, first + len(entries), created, deleted, title)
