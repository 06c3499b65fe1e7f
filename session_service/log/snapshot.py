"""A session's snapshot: the derived views of its log up to a seq, so an activation reads the
snapshot and a bounded tail of the log rather than the whole log. Pure: no I/O.

Contract:
- A snapshot at seq S is a function of the log's first S entries only. The log is append-only
  (seqs are positions; nothing but a purge deletes entries, and a purge deletes the snapshot in
  the same script), so a snapshot stays true for as long as it is stored, whoever wrote it and
  whenever: a stale owner's snapshot is still a right snapshot of its (acknowledged) prefix.
- It holds every view the owner keeps for the whole log: state and version, access (roles in
  grant order, invites, removals), thread fields, message counters and token totals, the time
  of seq 1, the message tree, feedback, the system messages' seqs and the answers open at S.
  It holds no message text: messages and events stay in the log (history reads them there).
- `window_start(session)` is the first seq an activation loads with it: a window of recent
  events (the prompt window reads the newest messages) and every open answer's prompt.
- `restore` gives a windowed image (log/session.py): the snapshot's views, the window's events
  before S hydrated (kept, not counted again) and the events after S applied. A snapshot of an
  unknown version or that does not decode is refused with ValueError: the caller loads the
  whole log instead, so a bad snapshot costs time, never correctness.
"""

from __future__ import annotations

import json
from typing import Any

from session_service.log.events import FeedbackChanged, decode
from session_service.log.merge_patch import dump_json
from session_service.log.session import Invite, OpenAnswer, Session

VERSION = 1
WINDOW_EVENTS = 150
"""Events before the snapshot's seq that an activation loads too: about 50 answered prompts,
which the prompt window reads most of the time (answering.py loads the rest when it needs it)."""
EVERY_EVENTS = 200
"""The owner stores a new snapshot once its log has grown this much past the last one, so an
activation reads at most about WINDOW_EVENTS + EVERY_EVENTS entries of the log."""


def window_start(session: Session) -> int:
    """The first seq an activation from a snapshot of `session` (now) must load."""
    start = max(1, session.last_seq + 1 - WINDOW_EVENTS)
    for answer in session.open_answers:
        start = min(start, answer.prompt_seq)
    return start


def encode(session: Session) -> bytes:
    """The snapshot of `session` at its last seq (the image must be whole or windowed: its
    derived views are the log's either way)."""
    tree = session.tree
    body: dict[str, Any] = {
        "v": VERSION,
        "seq": session.last_seq,
        "state": session.state_json(),
        "version": session.version,
        "owner": session.owner,
        "roles": list(session.roles.items()),
        "invites": [
            [i.invite_id, i.code_hash, i.role, i.expires_ms, i.created_by, i.revoked]
            for i in session.invites.values()
        ],
        "removed": sorted(session.removed),
        "title": session.title,
        "renamed": session.renamed,
        "deleted": [session.deleted_ms, session.purge_ms],
        "activity": session.last_activity_ms,
        "first_ts": session.first_ts_ms,
        "messages": session.message_count,
        "tokens": session.token_totals,
        "system": session.system_seqs,
        "tree": [list(tree.parent.items()), tree.head, tree.branched, list(tree.anchors())],
        "open": [[a.seq, a.prompt_seq] for a in session.open_answers],
        "feedback": [
            [f.seq, f.ts_ms, f.message_seq, f.user, f.rating, f.comment, f.imported_by]
            for given in session.feedback.values()
            for f in given.values()
        ],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def restore(
    session_id: str,
    epoch: int,
    created_ms: int,
    accessed_ms: int,
    snapshot: bytes,
    base_seq: int,
    entries: list[bytes],
) -> Session:
    """The windowed image of a session from its snapshot and the log's entries after
    `base_seq` (through its end). ValueError when the snapshot is unusable."""
    try:
        body = json.loads(snapshot)
        if body.get("v") != VERSION:
            raise ValueError(f"snapshot version {body.get('v')!r}")
        return _restore(session_id, epoch, created_ms, accessed_ms, body, base_seq, entries)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"snapshot does not decode: {exc!r}") from exc


def _restore(
    session_id: str,
    epoch: int,
    created_ms: int,
    accessed_ms: int,
    body: dict[str, Any],
    base_seq: int,
    entries: list[bytes],
) -> Session:
    seq = int(body["seq"])
    if not 0 <= base_seq <= seq <= base_seq + len(entries):
        raise ValueError(f"snapshot at {seq} does not fit a window after {base_seq}")
    s = Session(session_id, epoch, created_ms, accessed_ms)
    s.base_seq = s.snapshot_seq = base_seq
    s.state = json.loads(body["state"])
    s.state_size = len(dump_json(s.state).encode())
    s.version = int(body["version"])
    s.owner = body["owner"]
    s.roles = {user: role for user, role in body["roles"]}
    for invite_id, code_hash, role, expires_ms, by, revoked in body["invites"]:
        s.invites[invite_id] = Invite(invite_id, code_hash, role, expires_ms, by, revoked)
    s.removed = set(body["removed"])
    s.title, s.renamed = body["title"], bool(body["renamed"])
    s.deleted_ms, s.purge_ms = body["deleted"]
    s.last_activity_ms, s.first_ts_ms = body["activity"], body["first_ts"]
    s.message_count, s.token_totals = int(body["messages"]), list(body["tokens"])
    s.system_seqs = list(body["system"])
    parents, head, branched, anchors = body["tree"]
    s.tree.restore([(int(a), int(b)) for a, b in parents], head, branched, anchors)
    s.open_answers.extend(OpenAnswer(a, p) for a, p in body["open"])
    for f_seq, ts, message_seq, user, rating, comment, imported_by in body["feedback"]:
        given = FeedbackChanged(f_seq, ts, message_seq, user, rating, comment, imported_by)
        s.feedback.setdefault(message_seq, {})[user] = given
    for index, raw in enumerate(entries):
        event = decode(base_seq + index + 1, raw)
        if event.seq <= seq:
            s.hydrate(event)
        else:
            s.apply(event)
    s.snapshot_seq = seq
    return s
