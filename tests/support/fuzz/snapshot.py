"""What the stack stores, as one comparable value: every Redis key (SCAN + DUMP) and every file
under the attachments folder, for "a refused call stores nothing".

Volatile keys, which the services rewrite whatever a call's outcome, are left out or reduced to
what a call could store in them. The list is short on purpose; each entry says why:
- `dc:rl:*` (common/ratelimit.py): rate-limit buckets count every request, refused ones too:
  that is their job.
- `dc:{S}:lease` (session_service/store/sessions.py): a pod's claim to serve a session, with a TTL,
  renewed in the background and taken by reads as well as writes.
- `{dc-cluster}:members` (members_store.py): pod heartbeats; its scores are expiry times, so
  only the set of pods is compared (a pod leaving shows).
- `dc:{S}:meta` fields `epoch` and `accessed` (store.py): a pod that takes a session over
  (activation, which any call may cause, refused ones too) fences earlier owners by bumping
  the epoch and notes the time; the other fields are compared, and a new meta key still shows.
- `dc:search:feed` (thread_index.py): hints for the search indexer that a session changed,
  whose cursor the indexer moves in the background, and which every activation adds again
  (the thread index repair); a hint holds no content, and every write that matters changes
  the session's own keys, which are compared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import redis

from deploy.stack.waits import eventually
from durablechat.v1 import session_pb2

Snapshot = dict[str, Any]
SCAN_COUNT = 1000
SETTLE_TIMEOUT_S = 30.0
MEMBERS_KEY = b"{dc-cluster}:members"
FEED_KEY = b"dc:search:feed"
PAGE = 1000


ACTIVATION_FIELDS = (b"epoch", b"accessed")


def _skipped(key: bytes) -> bool:
    return (
        key.startswith(b"dc:rl:")
        or key == FEED_KEY
        or (key.startswith(b"dc:{") and key.endswith(b"}:lease"))
    )


def _session_meta(key: bytes) -> bool:
    return key.startswith(b"dc:{") and key.endswith(b"}:meta")


class Stored:
    """Reads snapshots of one Redis and one attachments folder."""

    def __init__(self, redis_port: int, attachments: Path) -> None:
        self._redis = redis.Redis(port=redis_port, socket_timeout=10)
        self._attachments = attachments

    def close(self) -> None:
        self._redis.close()

    def snapshot(self) -> Snapshot:
        keys = sorted(k for k in self._redis.scan_iter(count=SCAN_COUNT) if not _skipped(k))
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            if key == MEMBERS_KEY:
                pipe.zrange(key, 0, -1)
            elif _session_meta(key):
                pipe.hgetall(key)
            else:
                pipe.dump(key)
        values = pipe.execute()
        out: Snapshot = {}
        for key, value in zip(keys, values, strict=True):
            if key == MEMBERS_KEY:
                value = sorted(value)  # by name: scores move
            elif _session_meta(key):
                value = {f: v for f, v in value.items() if f not in ACTIVATION_FIELDS}
            out[key.decode("utf-8", "backslashreplace")] = value
        if self._attachments.is_dir():
            for path in sorted(self._attachments.rglob("*")):
                if path.is_file():
                    out[f"file {path.relative_to(self._attachments)}"] = path.stat().st_size
        return out

    def settled(self, busy: Callable[[], bool] = lambda: False) -> Snapshot:
        """A snapshot once nothing runs in the background (`busy` says whether answers still
        stream) and two reads in a row agree."""
        last: list[Snapshot] = [self.snapshot()]

        def still() -> tuple[Snapshot] | None:
            if busy():
                return None
            now = self.snapshot()
            if now == last[0]:
                return (now,)
            last[0] = now
            return None

        settled: tuple[Snapshot] = eventually(still, timeout=SETTLE_TIMEOUT_S)
        return settled[0]


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """The keys (and files) a call added, removed or changed, for a failure message."""
    names = sorted(set(before) | set(after))
    out = []
    for name in names:
        if name not in before:
            out.append(f"+ {name}")
        elif name not in after:
            out.append(f"- {name}")
        elif before[name] != after[name]:
            out.append(f"~ {name}")
    return out


class Answers:
    """Answers that accepted calls started and that may still be streaming: their ends are
    written in the background, so a snapshot waits for them (`busy`)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._list = channel.unary_unary(
            "/durablechat.v1.SessionService/ListMessages",
            request_serializer=session_pb2.ListMessagesRequest.SerializeToString,
            response_deserializer=session_pb2.ListMessagesResponse.FromString,
        )
        self._pending: dict[tuple[str, int], tuple[tuple[str, str], ...]] = {}

    def started(
        self, session_id: str, answer_seq: int, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        """An accepted call started answer `answer_seq`; `metadata` may read the session."""
        if answer_seq:
            self._pending[session_id, answer_seq] = metadata

    def busy(self) -> bool:
        for (sid, seq), metadata in list(self._pending.items()):
            if self._ended(sid, seq, metadata):
                del self._pending[sid, seq]
        return bool(self._pending)

    def _ended(self, sid: str, seq: int, metadata: tuple[tuple[str, str], ...]) -> bool:
        request = session_pb2.ListMessagesRequest(
            session_id=sid, after_seq=seq, limit=PAGE, all_branches=True
        )
        try:
            while True:
                page = self._list(request, metadata=metadata, timeout=10)
                if any(m.answer_seq == seq for m in page.messages):
                    return True
                if not page.has_more:
                    return False
                request.after_seq = page.messages[-1].seq
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                return True  # deleted, or its reader left: nobody can wait on it
            raise
