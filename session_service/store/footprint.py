"""Every user's storage footprint is bounded (docs/footprint.md): what each limit counts, its
keys, and the one message a refusal carries.

Contract:
- A session's log: at most MAX_LOG_EVENTS entries and MAX_LOG_BYTES bytes of entries, checked
  inside the owner's write script (lua/append.lua), atomic with the write: a write that would
  pass a limit stores nothing and is refused with LimitReached (RESOURCE_EXHAUSTED) naming the
  setting.
  The byte count is the meta field `lb`, kept by the same script; a session written before the
  count existed gets it on its next activation (the activation script sums its entries).
- Bounded overshoot: what ends something already accepted is not refused: an answer's end
  (its prompt passed the check), thread deletes and restores. At most MAX_QUEUED_PROMPTS + 1
  answers are open in a session, so a full log grows by at most that many answer ends.
- Sessions per user: a user owns at most MAX_SESSIONS_PER_USER sessions (the set
  `dc:u:{U}:owned`, keys.owned_key); claims of new ones (first write, CreateRoom,
  ImportSession, ForkSession) beyond it are refused. A deleted thread counts until it is purged;
  the purge gives the place back right after it (another slot), so a purger crashing in between
  keeps it taken. On one Redis the check is in the claiming write's script. On a Redis Cluster
  the user's set lives in another slot: the claim is reserved there first and given back when
  the write is refused; a write whose outcome is unknown (Redis failed mid-call, the pod died)
  keeps its reservation, so the bound never overshoots but a user may lose one slot per such
  failure (repaired when the session is next activated, if it exists, or never: the operator
  can SREM it). Sessions claimed before this change are counted on their next activation,
  without refusal.
- Attachments: at most MAX_ATTACHMENT_BYTES_PER_USER bytes of files per uploader (a file
  counts once per user who uploaded it), reserved in `dc:u:{U}:att` (keys.attachments_key)
  before the file is placed: an upload that would pass the limit keeps no file and no
  metadata. Nothing gives bytes back (files are shared by content and never deleted today).
- Redis at `maxmemory` (noeviction): a write is refused with StoreFull (RESOURCE_EXHAUSTED),
  nothing stored; activation, lease renewal and heartbeats may still write (flag allow-oom) so
  reads and ownership go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from session_service.errors import LimitReached
from session_service.limits import Limits
from session_service.log.events import OWNER

LOG_BYTES = "MAX_LOG_BYTES"
LOG_EVENTS = "MAX_LOG_EVENTS"
SESSIONS = "MAX_SESSIONS_PER_USER"
IMPORT_BYTES = "MAX_IMPORT_BYTES"
ATTACHMENT_BYTES = "MAX_ATTACHMENT_BYTES_PER_USER"

OWNER_FIELD = "own"
"""The owner's name in a session's meta hash, so a purge can give the owner's slot back."""
LOG_BYTES_FIELD = "lb"
"""Bytes of the session's log entries, in its meta hash."""


@dataclass(frozen=True)
class LogLimit:
    """The bounds a write's script checks (None instead: a write that is never refused)."""

    bytes: int
    events: int


@dataclass(frozen=True)
class Claim:
    """A write that makes `user` the owner of a new session, allowed while they own fewer
    than `limit` sessions."""

    user: str
    limit: int


def _kind(entry: bytes) -> str:
    # Every stored entry starts with `{"k":"<kind>"` (events.py).
    return entry[6:7].decode()


UNBOUNDED_KINDS = frozenset("edv")
"""Entries a full log still takes: answer ends and restarts (their prompts were accepted; a
restart comes only after an owner loss or a failed model call) and deletes."""


def _unbounded(entry: bytes) -> bool:
    kind = _kind(entry)
    if kind in UNBOUNDED_KINDS or kind == "x":  # an invite revoked: at most one per invite
        return True
    # A member removed or leaving: at most one per member, and never blocked by a full log.
    return kind == "g" and not json.loads(entry)["r"]


def log_limit(entries: list[bytes], limits: Limits) -> LogLimit | None:
    """The bounds a write of `entries` must keep (None: a write a full log still takes)."""
    if all(_unbounded(e) for e in entries):
        return None
    return LogLimit(limits.max_log_bytes, limits.max_log_events)


def claim_of(owner: str, entries: list[bytes], limits: Limits) -> Claim | None:
    """The claim a write makes: the first owner grant of a session nobody owns yet."""
    if owner or not entries or _kind(entries[0]) != "g":
        return None
    grant = json.loads(entries[0])
    if grant["r"] != OWNER or not grant["u"]:
        return None
    return Claim(grant["u"], limits.max_sessions_per_user)


CLAIM_BYTES = 1024
"""Room kept for the owner grant an import's claim writes before the import itself."""


def check_import(entries: list[bytes], limits: Limits) -> None:
    """Refuses an import whose entries (and the claim before them) would not fit one log,
    before anything is stored; the write's script checks again."""
    bounds = LogLimit(limits.max_log_bytes, limits.max_log_events)
    if len(entries) + 1 > bounds.events:
        raise log_full("events", 0, len(entries), bounds)
    size = sum(map(len, entries))
    if size + CLAIM_BYTES > bounds.bytes:
        raise log_full("bytes", 0, size, bounds)


def log_full(which: str, stored: int, adding: int, limit: LogLimit) -> LimitReached:
    if which == "events":
        return LimitReached(
            f"the session's log is full: it holds {stored} events, this write adds {adding} "
            f"and {LOG_EVENTS} is {limit.events}; nothing was stored (start a new session)"
        )
    return LimitReached(
        f"the session's log is full: it holds {stored} bytes, this write adds {adding} and "
        f"{LOG_BYTES} is {limit.bytes}; nothing was stored (start a new session)"
    )


def sessions_full(user: str, limit: int) -> LimitReached:
    return LimitReached(
        f"{user} owns {limit} sessions, the limit {SESSIONS}; nothing was stored "
        "(delete threads you no longer need: they count until purged)"
    )


def import_too_large(size: int, limit: int) -> LimitReached:
    return LimitReached(
        f"the import is {size} bytes; {IMPORT_BYTES} is {limit}; nothing was stored"
    )


def attachments_full(used: int, adding: int, limit: int) -> LimitReached:
    return LimitReached(
        f"your uploads take {used} bytes, this file at least {adding} more, and "
        f"{ATTACHMENT_BYTES} is {limit}; nothing was stored"
    )
