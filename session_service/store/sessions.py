"""A session's persistence in Redis: activation, the owner's writes, answer batches, release.
Keys: keys.py; scripts: lua/*.lua (scripts.py).

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
- Compaction: an answer's delta batches live in their own list (`keys.answer_key`) while it
  streams; the write of its end deletes them in the same script, so once the final message is
  stored no batch is left, and a kill -9 at any point leaves either the open answer with its
  batches or its end without them. The log holds three entries per answered prompt.
- Snapshots (log/snapshot.py): activation reads the session's snapshot and the log from the
  snapshot's window on, in one script; `save_snapshot` stores a newer one (fenced, one script);
  `log.load_entries` (log_reads.py) reads older entries on demand.
- Redis down or slow → `StoreUnavailable` within the socket timeout; no call is retried here,
  because a retried append whose first attempt did land would be stored twice. After such an
  error the outcome of a write is unknown and the caller must reload from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from session_service.errors import Conflict, Fenced, LimitReached, StoreFull, StoreUnavailable
from session_service.store.append_call import append_call
from session_service.store.attachments import AttachmentStore
from session_service.store.footprint import OWNER_FIELD, Claim, LogLimit, log_full, sessions_full
from session_service.store.group_commit import GroupCommit
from session_service.store.keys import (
    FEED_KEY,
    FEED_MAXLEN,
    PURGE_KEY,
    answer_key,
    idem_key,
    lease_key,
    log_key,
    meta_key,
    owned_key,
    snapshot_key,
    thread_keys,
)
from session_service.store.log_reads import LogReads
from session_service.store.quotas import QuotaConfig, Quotas
from session_service.store.redis_client import (
    REDIS_ERRORS,
    OutOfMemoryError,
    RedisClient,
    is_cluster,
    node_of,
)
from session_service.store.scripts import register, source
from session_service.store.thread_index import IndexUpdate
from session_service.store.usage import UsageStore

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


def lease_value(pod_id: str, epoch: int) -> str:
    return f"{pod_id}:{epoch}"


def lease_holder(value: str) -> str:
    """The pod id in a lease value."""
    return value.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Loaded:
    """What activation read: the new epoch, the log's entries after seq `base` and, when
    `base` > 0, the snapshot they go with (b"" and base 0: the whole log)."""

    epoch: int
    created_ms: int
    version: int
    entries: list[bytes]
    base: int = 0
    snapshot: bytes = b""


@dataclass(frozen=True)
class Held:
    """Activation found the lease held by another pod."""

    holder: str
    """The pod id."""
    value: str = field(default="", compare=False)
    """The lease's value, to break it (`activate(breaks=)`) when its holder is gone."""


@dataclass(frozen=True)
class Appended:
    """A stored append: seq of its first entry, or the original seq of a repeated client id."""

    first_seq: int
    version: int
    duplicate: bool = False


def _appended(
    reply: list[bytes],
    epoch: int,
    entries: list[bytes],
    expected_version: int | None,
    log_limit: LogLimit | None,
    claim: Claim | None,
) -> Appended:
    """The append script's reply (lua/append.lua) as the write's outcome or its refusal."""
    status = reply[0].decode()
    if status == "OK":
        return Appended(int(reply[1]), int(reply[2]))
    if status == "DUPLICATE":
        return Appended(int(reply[1]), 0, duplicate=True)
    if status == "FULL":
        assert log_limit is not None
        which = reply[1].decode()
        adding = len(entries) if which == "events" else sum(map(len, entries))
        raise log_full(which, int(reply[2]), adding, log_limit)
    if status == "SESSIONS":
        assert claim is not None
        raise sessions_full(claim.user, claim.limit)
    if status == "CONFLICT":
        raise Conflict(f"expected version {expected_version}, session is at {int(reply[1])}")
    raise Fenced(f"owner epoch {epoch} is stale; session is at epoch {int(reply[1])}")


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
        """Attached files (attachments.py)."""
        self._activate = register(client, "activate")
        self._append = register(client, "append")
        self._release = register(client, "release")
        self._batch = register(client, "answer_batch")
        self._snapshot = register(client, "snapshot")
        self.group = GroupCommit(client)
        self.log = LogReads(client)
        """Older log entries and client ids, read on demand (log_reads.py)."""
        """Prompts, answer batches and answer ends of concurrent sessions share round trips."""
        self._reserve = register(client, "reserve_session")
        self._cluster = is_cluster(client)
        self.usage = UsageStore(client)
        """Per-user token totals (usage.py)."""
        self.quotas = Quotas(client, quotas or QuotaConfig())
        """Per-user request rates and model-token budgets (rpc/quotas.py)."""

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
        self,
        session_id: str,
        pod_id: str,
        lease_ttl_ms: int,
        now_ms: int,
        snapshot: bool = True,
        breaks: str = "",
    ) -> Loaded | Held:
        """Takes the lease and ownership (epoch + 1, fencing every earlier owner) and reads the
        session (from its snapshot unless `snapshot` is False); or reports the pod that holds
        the lease. A lease whose value is `breaks` (its holder is gone) is taken over."""
        keys = [
            meta_key(session_id),
            log_key(session_id),
            lease_key(session_id),
            snapshot_key(session_id),
        ]
        args: list[str | int] = [now_ms, pod_id, lease_ttl_ms, int(snapshot), breaks]
        try:
            reply = await self._activate(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if reply[0] == b"HELD":
            value = reply[1].decode()
            return Held(lease_holder(value), value)
        _, epoch, created, version, entries, base, body = reply
        return Loaded(int(epoch), int(created), int(version), list(entries), int(base), body)

    async def save_snapshot(
        self,
        session_id: str,
        epoch: int,
        seq: int,
        window_start: int,
        body: bytes,
        client_ids: dict[str, int] | None = None,
    ) -> bool:
        """Stores the snapshot at `seq` unless one as new is stored (`body` b"": deletes the
        stored one), with `client_ids` added to the idem hash where absent; raises Fenced for a
        stale owner. False: not stored (an equal or newer one is there)."""
        keys = [
            meta_key(session_id),
            log_key(session_id),
            snapshot_key(session_id),
            idem_key(session_id),
        ]
        args: list[str | int | bytes] = [epoch, seq, window_start, body]
        for client_id, first_seq in (client_ids or {}).items():
            args += [client_id, first_seq]
        try:
            reply = int(await self._snapshot(keys=keys, args=args))
        except REDIS_ERRORS as exc:
            raise _store_error(exc) from exc
        if reply == -1:
            raise Fenced(f"owner epoch {epoch} is stale")
        if reply == -2:
            raise StoreUnavailable(f"snapshot at {seq} is past the end of the log")
        return reply == 1

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
                pipe.eval(source("renew"), 1, lease_key(session_id), value, lease_ttl_ms)
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
        keys, args = append_call(
            session_id=session_id,
            epoch=epoch,
            now_ms=now_ms,
            entries=entries,
            client_id=client_id,
            expected_version=expected_version,
            version_increment=version_increment,
            ended_answer=ended_answer,
            index=index,
            log_limit=log_limit,
            claim=claim,
            inline=inline,
        )
        if claim is not None and not inline:
            await self._reserve_session(session_id, claim)
        try:
            try:
                reply = await self.group.run(self._append, keys, args)
            except REDIS_ERRORS as exc:
                raise _store_error(exc) from exc
            appended = _appended(reply, epoch, entries, expected_version, log_limit, claim)
        except (Conflict, Fenced, LimitReached):
            if claim is not None and not inline:  # refused: nothing stored, give it back
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._client.srem(owned_key(claim.user), session_id)
            raise
        if not inline and not appended.duplicate and index.crosses_slots:
            await self.follow_up(session_id, index)
        return appended

    async def _reserve_session(self, session_id: str, claim: Claim) -> None:
        try:
            reserved = await self._reserve(
                keys=[owned_key(claim.user)], args=[session_id, claim.limit]
            )
        except REDIS_ERRORS as exc:
            raise _store_error(exc) from exc
        if not reserved:
            raise sessions_full(claim.user, claim.limit)

    async def follow_up(self, session_id: str, index: IndexUpdate) -> None:
        """Writes the members' part of an index change (and the purge queue) outside the
        session's script: one pipelined round trip. A failure is logged, not raised: the write
        itself is stored, and the thread's next activation repairs the index."""
        pipe = self._client.pipeline(transaction=False)
        for user, op in index.users:
            # EVAL, not EVALSHA: cluster pipelines refuse EVALSHA.
            args = (session_id, index.score, index.message_count, op)
            pipe.eval(source("index_one"), 4, *thread_keys(user), *args)
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
            reply = int(await self.group.run(self._batch, keys, [epoch, offset, text]))
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
