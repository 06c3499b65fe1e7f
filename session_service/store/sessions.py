"""Every Redis call of the session service; the only module that imports redis.

Contract:
- Keys of one session share the hash tag `{session_id}` (`dc:{S}:meta`, `dc:{S}:log`,
  `dc:{S}:idem`, `dc:{S}:lease`), so every script touches one Redis Cluster slot.
- Ownership: activation takes the session's lease (`pod:epoch`, expiring after the lease TTL)
  and increments the epoch in the same script; a lease held by another pod is reported, not
  broken. Leases are renewed for many sessions in one pipelined round trip.
- Every mutation is one Lua script (registered once, run by EVALSHA), checked against the owner
  epoch inside Redis: a stale epoch gets `Fenced` and changes nothing. A write past the log's
  bounds or its claimant's session count (footprint.py) gets `LimitReached` the same way.
- Redis at its maxmemory refuses writes before anything is stored: `StoreFull`. Activation,
  release and lease renewal are flagged `allow-oom` (a few bytes each), so reads go on.
- Log entries are opaque bytes; an entry's seq is its 1-based position in `dc:{S}:log`, assigned
  by RPUSH inside the script, so seqs start at 1 and have no gaps.
- A write is acknowledged only when Redis has answered (AOF, `appendfsync always`).
- Redis down or slow → `StoreUnavailable` within the socket timeout; no call is retried here,
  because a retried append whose first attempt did land would be stored twice. After such an
  error the outcome of a write is unknown and the caller must reload from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from session_service.errors import Conflict, Fenced, LimitReached, StoreFull, StoreUnavailable
from session_service.rpc.quotas import QuotaConfig, Quotas
from session_service.store.attachments import AttachmentStore
from session_service.store.footprint import (
    OWNER_FIELD,
    RESERVE_SESSION,
    Claim,
    LogLimit,
    log_full,
    owned_key,
    sessions_full,
)
from session_service.store.redis_client import (
    REDIS_ERRORS,
    OutOfMemoryError,
    RedisClient,
    is_cluster,
    node_of,
)
from session_service.store.thread_index import (
    FEED_KEY,
    FEED_MAXLEN,
    INDEX_LUA,
    INDEX_ONE,
    PURGE_KEY,
    IndexUpdate,
    user_keys,
)
from session_service.store.usage import UsageStore

_ACTIVATE = """#!lua flags=allow-oom
-- allow-oom: at Redis's maxmemory a session still activates (a lease, the epoch: a few bytes),
-- so reads go on while writes are refused (footprint.py).
local holder = redis.call('GET', KEYS[3])
if holder and string.match(holder, '^(.*):%d+$') ~= ARGV[2] then return {'HELD', holder} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('SET', KEYS[3], ARGV[2] .. ':' .. epoch, 'PX', ARGV[3])
redis.call('HSETNX', KEYS[1], 'created', ARGV[1])
redis.call('HSET', KEYS[1], 'accessed', ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'created', 'version')
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
if #entries > 0 and not redis.call('HGET', KEYS[1], 'lb') then  -- written before the count
  local bytes = 0
  for _, e in ipairs(entries) do bytes = bytes + #e end
  redis.call('HSET', KEYS[1], 'lb', bytes)
end
return {'OK', tostring(epoch), meta[1], meta[2] or '0', entries}
"""

_APPEND = (
    INDEX_LUA
    + f"local FEED_MAXLEN = '{FEED_MAXLEN}'"
    + """
-- ARGV: epoch, now, client id, expected version, version increment, ended answer ('1'/'0'),
-- entry count, summary field count, session id, activity score, message count, purge, user ops,
-- search feed ('1'/''), log bytes limit ('': not bounded), log events limit, claimant ('':
-- none), their sessions limit; then the entries, then the summary's field/value pairs.
-- KEYS: meta, log, idem, ended answer (meta when none), the claimant's owned set (meta when
-- none), 4 keys per user op, the search feed (when fed), the purge queue (when purge is set).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then return {'FENCED', epoch or '0'} end
if ARGV[3] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[3])
  if seen then return {'DUPLICATE', seen} end
end
if ARGV[4] ~= '' then
  local version = redis.call('HGET', KEYS[1], 'version') or '0'
  if version ~= ARGV[4] then return {'CONFLICT', version} end
end
local n = tonumber(ARGV[7])
local adding = 0
for i = 19, 18 + n do adding = adding + #ARGV[i] end
if ARGV[15] ~= '' then
  local stored = redis.call('LLEN', KEYS[2])
  if stored + n > tonumber(ARGV[16]) then return {'FULL', 'events', tostring(stored)} end
  local bytes = tonumber(redis.call('HGET', KEYS[1], 'lb') or '0')
  if bytes + adding > tonumber(ARGV[15]) then return {'FULL', 'bytes', tostring(bytes)} end
end
if ARGV[18] ~= '' and redis.call('SISMEMBER', KEYS[5], ARGV[9]) == 0 then
  if redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[18]) then return {'SESSIONS'} end
  redis.call('SADD', KEYS[5], ARGV[9])
end
if ARGV[17] ~= '' then redis.call('HSET', KEYS[1], 'own', ARGV[17]) end
local first = 0
local last = 0
for i = 19, 18 + n do
  last = redis.call('RPUSH', KEYS[2], ARGV[i])
  if first == 0 then first = last end
end
redis.call('HINCRBY', KEYS[1], 'lb', adding)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], first) end
if ARGV[6] == '1' then redis.call('DEL', KEYS[4]) end
local version = redis.call('HINCRBY', KEYS[1], 'version', ARGV[5])
redis.call('HSET', KEYS[1], 'accessed', ARGV[2])
for i = 19 + n, 18 + n + 2 * tonumber(ARGV[8]), 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
local ops = ARGV[13]
for j = 1, #ops do
  index_user(2 + 4 * j, ARGV[9], ARGV[10], ARGV[11], string.sub(ops, j, j))
end
if ARGV[14] == '1' then
  redis.call('XADD', KEYS[6 + 4 * #ops], 'MAXLEN', '~', FEED_MAXLEN, '*', 's', ARGV[9])
end
if ARGV[12] == 'rem' then redis.call('ZREM', KEYS[#KEYS], ARGV[9])
elseif ARGV[12] ~= '' then redis.call('ZADD', KEYS[#KEYS], ARGV[12], ARGV[9]) end
return {'OK', tostring(first), tostring(version)}
"""
)

_BATCH = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -1 end
local stored = redis.call('LLEN', KEYS[2])
if stored ~= tonumber(ARGV[2]) then return stored end
return redis.call('RPUSH', KEYS[2], ARGV[3])
"""

_RELEASE = """#!lua flags=allow-oom
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'accessed', ARGV[3])
return 1
"""

_RENEW = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

logger = logging.getLogger(__name__)


def _store_error(exc: Exception) -> StoreUnavailable | StoreFull:
    """A failed Redis call as the session error it means; Redis at its maxmemory refused the
    write before anything was stored (footprint.py)."""
    if isinstance(exc, OutOfMemoryError):
        return StoreFull(
            "Redis is full (its maxmemory is reached); nothing was stored, reads go on. "
            "The operator must raise maxmemory or make room (docs/footprint.md)"
        )
    return StoreUnavailable(f"redis: {exc}")


def meta_key(session_id: str) -> str:
    return f"dc:{{{session_id}}}:meta"


def log_key(session_id: str) -> str:
    return f"dc:{{{session_id}}}:log"


def idem_key(session_id: str) -> str:
    return f"dc:{{{session_id}}}:idem"


def answer_key(session_id: str, answer_seq: int) -> str:
    """The stored delta batches of one answer, in order; deleted when the answer ends."""
    return f"dc:{{{session_id}}}:ans:{answer_seq}"


def lease_key(session_id: str) -> str:
    return f"dc:{{{session_id}}}:lease"


def lease_value(pod_id: str, epoch: int) -> str:
    return f"{pod_id}:{epoch}"


def lease_holder(value: str) -> str:
    """The pod id in a lease value."""
    return value.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Loaded:
    """What activation read: the new epoch and the whole log."""

    epoch: int
    created_ms: int
    version: int
    entries: list[bytes]


@dataclass(frozen=True)
class Held:
    """Activation found the lease held by another pod."""

    holder: str


@dataclass(frozen=True)
class Appended:
    """A stored append: seq of its first entry, or the original seq of a repeated client id."""

    first_seq: int
    version: int
    duplicate: bool = False


class Store:
    """Session persistence in Redis. Holds one connection pool for the process."""

    def __init__(
        self,
        client: RedisClient,
        quotas: QuotaConfig | None = None,
        attachments: AttachmentStore | None = None,
    ) -> None:
        self._client = client
        self.attachments = attachments or AttachmentStore(client, Path("attachments"), 0)
        """Attached files (attachment_store.py)."""
        self._activate = client.register_script(_ACTIVATE)
        self._append = client.register_script(_APPEND)
        self._release = client.register_script(_RELEASE)
        self._batch = client.register_script(_BATCH)
        self._renew = client.register_script(_RENEW)
        self._reserve = client.register_script(RESERVE_SESSION)
        self._cluster = is_cluster(client)
        self.usage = UsageStore(client)
        """Per-user token totals (usage_store.py)."""
        self.quotas = Quotas(client, quotas or QuotaConfig())
        """Per-user request rates and model-token budgets (quotas.py)."""

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def exists(self, session_id: str) -> bool:
        """Whether anything ever activated or wrote the session (its meta key is there)."""
        try:
            return bool(await self._client.exists(meta_key(session_id)))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def activate(
        self, session_id: str, pod_id: str, lease_ttl_ms: int, now_ms: int
    ) -> Loaded | Held:
        """Takes the lease and ownership (epoch + 1, fencing every earlier owner) and reads the
        session; or reports the pod that holds the lease."""
        keys = [meta_key(session_id), log_key(session_id), lease_key(session_id)]
        try:
            reply = await self._activate(keys=keys, args=[now_ms, pod_id, lease_ttl_ms])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if reply[0] == b"HELD":
            return Held(lease_holder(reply[1].decode()))
        _, epoch, created, version, entries = reply
        return Loaded(int(epoch), int(created), int(version), list(entries))

    async def renew(self, leases: list[tuple[str, str]], lease_ttl_ms: int) -> list[bool | None]:
        """Extends many (session id, lease value) leases in one pipelined round trip per Redis
        node: True renewed, False no longer ours, None unknown (that node failed; the others
        are unaffected). Raises StoreUnavailable when every node failed."""
        if not leases:
            return []
        batches: dict[str, list[int]] = {}
        for index, (session_id, _) in enumerate(leases):
            batches.setdefault(node_of(self._client, lease_key(session_id)), []).append(index)
        results: list[bool | None] = [None] * len(leases)

        async def run(indexes: list[int]) -> None:
            pipe = self._client.pipeline(transaction=False)
            for i in indexes:
                session_id, value = leases[i]
                # EVAL, not EVALSHA: cluster pipelines refuse EVALSHA; the script is tiny.
                pipe.eval(_RENEW, 1, lease_key(session_id), value, lease_ttl_ms)
            replies = await pipe.execute()
            for i, reply in zip(indexes, replies, strict=True):
                results[i] = bool(reply)

        outcomes = await asyncio.gather(
            *(run(indexes) for indexes in batches.values()), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and len(failures) == len(outcomes):
            raise StoreUnavailable(f"redis: {failures[0]}") from failures[0]
        return results

    async def append(
        self,
        session_id: str,
        epoch: int,
        now_ms: int,
        entries: list[bytes],
        *,
        client_id: str = "",
        expected_version: int | None = None,
        version_increment: int = 0,
        ended_answer: int = 0,
        index: IndexUpdate | None = None,
        log_limit: LogLimit | None = None,
        claim: Claim | None = None,
    ) -> Appended:
        """Appends entries atomically; raises Fenced or Conflict, reports a repeated client id.
        `ended_answer` names an answer whose delta batches go with this write (its end);
        `index` is the write's thread-index change (thread_index.py): in the same script on a
        single Redis; on a Redis Cluster the members' part follows the write (`follow_up`).
        `log_limit` bounds the log after the write, `claim` counts the session as its new
        owner's (footprint.py): LimitReached when either is passed, nothing stored."""
        index = index or IndexUpdate(feed=False)
        inline = not self._cluster
        if claim is not None and not inline:
            await self._reserve_session(session_id, claim)
        try:
            return await self._append_script(
                session_id,
                epoch,
                now_ms,
                entries,
                client_id,
                expected_version,
                version_increment,
                ended_answer,
                index,
                log_limit,
                claim,
            )
        except (Conflict, Fenced, LimitReached):
            if claim is not None and not inline:  # refused: nothing stored, give it back
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._client.srem(owned_key(claim.user), session_id)
            raise

    async def _reserve_session(self, session_id: str, claim: Claim) -> None:
        try:
            reserved = await self._reserve(
                keys=[owned_key(claim.user)], args=[session_id, claim.limit]
            )
        except REDIS_ERRORS as exc:
            raise _store_error(exc) from exc
        if not reserved:
            raise sessions_full(claim.user, claim.limit)

    async def _append_script(
        self,
        session_id: str,
        epoch: int,
        now_ms: int,
        entries: list[bytes],
        client_id: str,
        expected_version: int | None,
        version_increment: int,
        ended_answer: int,
        index: IndexUpdate,
        log_limit: LogLimit | None,
        claim: Claim | None,
    ) -> Appended:
        inline = not self._cluster
        users = index.users if inline else ()
        purge = index.purge if inline else ""
        feed = index.feed and inline
        keys = [meta_key(session_id), log_key(session_id), idem_key(session_id)]
        keys.append(answer_key(session_id, ended_answer) if ended_answer else keys[0])
        keys.append(owned_key(claim.user) if claim is not None and inline else keys[0])
        for user, _ in users:
            keys += user_keys(user)
        if feed:
            keys.append(FEED_KEY)
        if purge:
            keys.append(PURGE_KEY)
        args: list[str | bytes | int] = [
            epoch,
            now_ms,
            client_id,
            "" if expected_version is None else expected_version,
            version_increment,
            "1" if ended_answer else "0",
            len(entries),
            len(index.fields),
            session_id,
            index.score,
            index.message_count,
            purge,
            "".join(op for _, op in users),
            "1" if feed else "",
            "" if log_limit is None else log_limit.bytes,
            "" if log_limit is None else log_limit.events,
            "" if claim is None else claim.user,
            claim.limit if claim is not None and inline else "",
            *entries,
        ]
        for field, value in index.fields:
            args += [field, value]
        try:
            reply = await self._append(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise _store_error(exc) from exc
        status = reply[0].decode()
        if status == "FULL":
            assert log_limit is not None
            which = reply[1].decode()
            adding = len(entries) if which == "events" else sum(map(len, entries))
            raise log_full(which, int(reply[2]), adding, log_limit)
        if status == "SESSIONS":
            assert claim is not None
            raise sessions_full(claim.user, claim.limit)
        if status == "OK":
            if not inline and index.crosses_slots:
                await self.follow_up(session_id, index)
            return Appended(int(reply[1]), int(reply[2]))
        if status == "DUPLICATE":
            return Appended(int(reply[1]), 0, duplicate=True)
        if status == "CONFLICT":
            raise Conflict(f"expected version {expected_version}, session is at {int(reply[1])}")
        raise Fenced(f"owner epoch {epoch} is stale; session is at epoch {int(reply[1])}")

    async def follow_up(self, session_id: str, index: IndexUpdate) -> None:
        """Writes the members' part of an index change (and the purge queue) outside the
        session's script: one pipelined round trip. A failure is logged, not raised: the write
        itself is stored, and the thread's next activation repairs the index."""
        pipe = self._client.pipeline(transaction=False)
        for user, op in index.users:
            # EVAL, not EVALSHA: cluster pipelines refuse EVALSHA.
            pipe.eval(
                INDEX_ONE, 4, *user_keys(user), session_id, index.score, index.message_count, op
            )
        if index.owner:  # sessions claimed before the count existed (footprint.py)
            pipe.sadd(owned_key(index.owner), session_id)
            pipe.hsetnx(meta_key(session_id), OWNER_FIELD, index.owner)
        if index.feed:
            pipe.xadd(FEED_KEY, {"s": session_id}, maxlen=FEED_MAXLEN, approximate=True)
        if index.purge == "rem":
            pipe.zrem(PURGE_KEY, session_id)
        elif index.purge:
            pipe.zadd(PURGE_KEY, {session_id: int(index.purge)})
        try:
            await pipe.execute()
        except REDIS_ERRORS as exc:
            logger.warning(
                "thread index not updated; repaired on the next activation",
                extra={"session_id": session_id, "error": str(exc)},
            )

    async def append_batch(
        self, session_id: str, epoch: int, answer_seq: int, offset: int, text: str
    ) -> None:
        """Stores batch `offset` of an answer; raises Fenced for a stale owner, and
        StoreUnavailable if the stored batches are not exactly the ones before it."""
        keys = [meta_key(session_id), answer_key(session_id, answer_seq)]
        try:
            reply = int(await self._batch(keys=keys, args=[epoch, offset, text]))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if reply == -1:
            raise Fenced(f"owner epoch {epoch} is stale")
        if reply != offset + 1:
            raise StoreUnavailable(f"answer {answer_seq} has {reply} batches, not {offset + 1}")

    async def load_batches(self, session_id: str, answer_seq: int) -> list[str]:
        try:
            raw = await self._client.lrange(answer_key(session_id, answer_seq), 0, -1)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return [item.decode() if isinstance(item, bytes) else item for item in raw]

    async def release(self, session_id: str, pod_id: str, epoch: int, accessed_ms: int) -> bool:
        """Gives the lease up (if still ours) and records the last access time."""
        keys = [meta_key(session_id), lease_key(session_id)]
        try:
            reply = await self._release(
                keys=keys, args=[lease_value(pod_id, epoch), epoch, accessed_ms]
            )
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return bool(reply)
