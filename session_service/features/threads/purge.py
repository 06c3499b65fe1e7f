"""Purges deleted threads once their retention is over (docs/threads.md).

Contract: every pod runs `purge_forever`; runs may overlap (each purge is one idempotent script).
A thread is purged only if it is still deleted, its purge time (`pg` in its meta) has come, and
no pod holds its lease; otherwise it stays queued (held) or leaves the queue (restored). Its
`meta` (all but its epoch, so the next owner's epoch is higher and any owner that still has it
in memory stays fenced), `log` and `idem` keys are deleted together. Members' index entries
were removed by the delete itself; the owner's count of sessions (footprint.py, another slot)
is decremented right after, so a crash in between leaves the place taken (see footprint.py). The
search indexer is then told (a hint on its feed, before
the thread leaves the purge queue, so a crash in between repeats the hint rather than losing
it) and drops the thread's rows (docs/search.md). Redis work: store/purge_queue.py.
"""

from __future__ import annotations

import asyncio
import logging

from session_service.errors import StoreUnavailable
from session_service.log.events import now_ms
from session_service.store.purge_queue import NOT_YET, PURGED, PurgeQueue
from session_service.store.redis_client import RedisClient

logger = logging.getLogger(__name__)
BATCH = 100


class Purger:
    def __init__(self, client: RedisClient, interval_s: float) -> None:
        self._queue = PurgeQueue(client)
        self._interval_s = interval_s

    async def purge_due(self, now: int | None = None) -> int:
        """Purges up to BATCH threads due by `now`; returns how many were purged."""
        now = now_ms() if now is None else now
        purged = 0
        for sid in await self._queue.due(now, BATCH):
            done = await self._queue.purge(sid, now)
            if done.outcome != NOT_YET:
                # Also when not deleted: it may be a retry of a purge whose hint was never sent.
                await self._queue.hint_and_dequeue(sid)
            if done.outcome == PURGED:
                if done.owner:  # the owner's slot back (footprint.py; another Redis slot)
                    await self._queue.give_back(done.owner, sid)
                purged += 1
                logger.info("deleted thread purged", extra={"session_id": sid})
        return purged

    async def purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.purge_due()
            except StoreUnavailable as exc:
                logger.warning("purge skipped: %s", exc)
