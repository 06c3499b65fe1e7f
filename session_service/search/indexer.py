"""Feeds the search database from Redis (docs/search.md): hints from the `dc:search:feed`
stream name sessions; each session's log is read from the last seq indexed. Rebuilds from every
session log when the database is new.

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
from typing import Any, cast

from redis.exceptions import ResponseError

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
from session_service.store.sessions import log_key, meta_key
from session_service.store.thread_index import FEED_KEY

logger = logging.getLogger(__name__)

READ_CHUNK = 1000
"""Log entries read per round trip."""
HINTS_PER_READ = 100
BLOCK_MS = 1000
LOG_KEYS = "dc:{*}:log"


class Indexer:
    def __init__(self, client: RedisClient, workers: IndexWorkers, group: str) -> None:
        self._client = client
        self._workers = workers
        self._group = group
        self.ready = asyncio.Event()
        """Set once the first catch-up (and rebuild, if any) is done."""

    async def index_session(self, session_id: str) -> int:
        """Indexes what is new in one session's log; returns how many entries were read."""
        key = log_key(session_id)
        start, indexed_created = await self._workers.read(lambda i: i.position(session_id))
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(key)
        pipe.hget(meta_key(session_id), "created")
        length, raw_created = await pipe.execute()
        length, created = int(length), int(raw_created or 0)
        if start and (length < start or created != indexed_created):
            # Purged (the id may name a new session now): nothing of the old one may remain.
            await self._workers.write(lambda i: i.forget(session_id))
            start = 0
        read = 0
        while start + read < length:
            first = start + read
            raw = cast(list[bytes], await self._client.lrange(key, first, first + READ_CHUNK - 1))
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
        async for key in self._client.scan_iter(match=LOG_KEYS, count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            await self.index_session(name[len("dc:{") : -len("}:log")])
            sessions += 1
        return sessions

    async def _ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(FEED_KEY, self._group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run_forever(self, rebuild: bool) -> None:
        """Catches up (rebuilding first when asked), then follows the feed until cancelled.
        Redis errors are logged and retried."""
        while True:
            try:
                await self._ensure_group()
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
            reply: Any = await self._client.xreadgroup(
                self._group,
                "indexer",
                {FEED_KEY: cursor},
                count=HINTS_PER_READ,
                block=BLOCK_MS if cursor == ">" else None,
            )
            hints: list[tuple[bytes, dict[bytes, bytes] | None]] = reply[0][1] if reply else []
            if not hints:
                self.ready.set()
                cursor = ">"
                continue
            sessions = {f[b"s"].decode() for _, f in hints if f and b"s" in f}
            for session_id in sorted(sessions):
                await self.index_session(session_id)
            await self._client.xack(FEED_KEY, self._group, *[hint_id for hint_id, _ in hints])


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
