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
it) and drops the thread's rows (docs/search.md).
"""

from __future__ import annotations

import asyncio
import logging

from session_service.errors import StoreUnavailable
from session_service.log.events import now_ms
from session_service.store.footprint import owned_key
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.sessions import idem_key, lease_key, log_key, meta_key
from session_service.store.thread_index import FEED_KEY, FEED_MAXLEN, PURGE_KEY

logger = logging.getLogger(__name__)
BATCH = 100

# KEYS: meta, log, idem, lease. ARGV: now (ms). {1, owner} purged, {0} not deleted (any more),
# {-1} not yet.
_PURGE = """
local due = redis.call('HGET', KEYS[1], 'pg')
if not due then return {0} end
if tonumber(due) > tonumber(ARGV[1]) or redis.call('EXISTS', KEYS[4]) == 1 then return {-1} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local owner = redis.call('HGET', KEYS[1], 'own') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if epoch then redis.call('HSET', KEYS[1], 'epoch', epoch) end
return {1, owner}
"""


class Purger:
    def __init__(self, client: RedisClient, interval_s: float) -> None:
        self._client = client
        self._interval_s = interval_s
        self._purge = client.register_script(_PURGE)

    async def purge_due(self, now: int | None = None) -> int:
        """Purges up to BATCH threads due by `now`; returns how many were purged."""
        now = now_ms() if now is None else now
        try:
            due = await self._client.zrange(
                PURGE_KEY, "-inf", now, byscore=True, offset=0, num=BATCH
            )
            purged = 0
            for raw in due:
                sid = raw.decode() if isinstance(raw, bytes) else str(raw)
                keys = [meta_key(sid), log_key(sid), idem_key(sid), lease_key(sid)]
                reply = await self._purge(keys=keys, args=[now])
                outcome = int(reply[0])
                if outcome >= 0:
                    # Also when 0: it may be a retry of a purge whose hint was never sent.
                    await self._client.xadd(
                        FEED_KEY, {"s": sid}, maxlen=FEED_MAXLEN, approximate=True
                    )
                    await self._client.zrem(PURGE_KEY, sid)
                if outcome == 1:
                    if reply[1]:  # the owner's slot back (footprint.py; another Redis slot)
                        await self._client.srem(owned_key(reply[1].decode()), sid)
                    purged += 1
                    logger.info("deleted thread purged", extra={"session_id": sid})
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return purged

    async def purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.purge_due()
            except StoreUnavailable as exc:
                logger.warning("purge skipped: %s", exc)
