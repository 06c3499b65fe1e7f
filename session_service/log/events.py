"""Session events as domain values, and their stored form (one compact JSON object per log entry).

An entry's seq is not stored: it is the entry's position in the log. Decoding is total over what
encoding produces; an unknown kind is a corrupt log and raises ValueError.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

COMPLETED = "completed"
INTERRUPTED = "interrupted"
FAILED = "failed"
CANCELLED = "cancelled"
ANSWER_STATUSES = frozenset({COMPLETED, INTERRUPTED, FAILED, CANCELLED})

OWNER = "owner"
MEMBER = "member"
VIEWER = "viewer"
"""Access roles as grant entries store them (what each may do: actor/access.py)."""


def now_ms() -> int:
    """Wall-clock milliseconds: the timestamps stored with events."""
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message; `seq` is its log position."""

    seq: int
    role: str
    content: str
    user: str
    ts_ms: int
    client_id: str = ""
    answer_seq: int = 0
    answer_status: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    regenerated_tokens: int = 0
    reply_to: int = 0
    """The seq of the message this one replies to (0: none)."""
    attachments: tuple[tuple[str, str, str, int], ...] = ()
    """(sha256, filename, media type, size) of each attached file (docs/attachments.md)."""
    imported_by: str | None = None
    """Set when an import stored it (docs/export.md): the importer ("" with AUTH_MODE=off); its
    author, time and role are then what the imported file says, unverified."""


@dataclass(frozen=True, slots=True)
class MessageAppended:
    seq: int
    ts_ms: int
    message: Message


@dataclass(frozen=True, slots=True)
class StateChanged:
    seq: int
    ts_ms: int
    patch_json: str
    version: int
    user: str = ""
    imported_by: str | None = None


@dataclass(frozen=True, slots=True)
class AnswerStarted:
    seq: int
    ts_ms: int
    prompt_seq: int
    by: str = ""
    """Who asked for it when not the prompt's author (a regeneration): charged for it."""
    imported_by: str | None = None


@dataclass(frozen=True, slots=True)
class AnswerEnded:
    """The stored assistant message of an answer (`message.answer_seq` names its start)."""

    seq: int
    ts_ms: int
    message: Message
    error: str
    cancelled_by: str = ""


@dataclass(frozen=True, slots=True)
class AnswerRestarted:
    """The open answer `message.answer_seq` starts again from nothing (the model could not
    continue its stored text: ANSWER_CONTINUE=restart). `message` keeps that text as an
    interrupted version (status INTERRUPTED) under the answer's prompt; the answer's batches
    start again at offset 0, and clients replace the text they show of it."""

    seq: int
    ts_ms: int
    message: Message
    error: str


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """Who may access the session changed (access.py). Three stored kinds: a grant (`user`
    gets `role`; "" removes), an invite created (`invite_hash` is the SHA-256 of its code, never
    the code) and an invite revoked."""

    seq: int
    ts_ms: int
    by: str
    user: str = ""
    role: str = ""
    invite_id: str = ""
    invite_hash: str = ""
    expires_ms: int = 0
    revoked: bool = False


UP = "up"
DOWN = "down"
RATINGS = ("", UP, DOWN)


@dataclass(frozen=True, slots=True)
class FeedbackChanged:
    """`user` rated the assistant message at `message_seq` (rating "" and no comment:
    withdrawn); replaces their earlier feedback on it."""

    seq: int
    ts_ms: int
    message_seq: int
    user: str
    rating: str
    comment: str
    imported_by: str | None = None


@dataclass(frozen=True, slots=True)
class BranchSelected:
    """The session's head moved to `head` (a message seq; 0: before the first message):
    new messages continue from there (docs/branches.md)."""

    seq: int
    ts_ms: int
    head: int
    by: str
    imported_by: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadChanged:
    """The thread was renamed (`title`), deleted (`purge_ms`: when it may be purged) or
    restored (docs/threads.md)."""

    seq: int
    ts_ms: int
    by: str
    title: str = ""
    deleted: bool = False
    restored: bool = False
    purge_ms: int = 0
    imported_by: str | None = None


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """A batch of answer text; not a log event. `offset` is the batch index in its answer."""

    answer_seq: int
    offset: int
    text: str


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Replay is over; (seq, offset) is the subscriber's cursor at this point."""

    seq: int
    offset: int


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """Not a log event: the users subscribed now. `seq`/`offset` repeat the cursor."""

    seq: int
    offset: int
    users: tuple[str, ...]


LogEvent = (
    MessageAppended
    | StateChanged
    | AnswerStarted
    | AnswerEnded
    | AnswerRestarted
    | AccessChanged
    | ThreadChanged
    | FeedbackChanged
    | BranchSelected
)
Event = LogEvent | AnswerDelta | CaughtUp | PresenceChanged
MessageEvent = MessageAppended | AnswerEnded | AnswerRestarted
"""The log events that store a message."""


def _encode(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()


def encode_message(
    role: str,
    content: str,
    user: str,
    ts_ms: int,
    client_id: str,
    reply_to: int = 0,
    attachments: tuple[tuple[str, str, str, int], ...] = (),
) -> bytes:
    entry: dict[str, Any] = {"k": "m", "r": role, "c": content, "t": ts_ms}
    if attachments:
        entry["at"] = [list(a) for a in attachments]
    if user:
        entry["u"] = user
    if client_id:
        entry["id"] = client_id
    if reply_to:
        entry["rt"] = reply_to
    return _encode(entry)


def encode_feedback(message_seq: int, user: str, rating: str, comment: str, ts_ms: int) -> bytes:
    return _encode({"k": "f", "s": message_seq, "u": user, "r": rating, "c": comment, "t": ts_ms})


def encode_state(patch_json: str, version: int, ts_ms: int, user: str = "") -> bytes:
    # The patch is already validated compact JSON text: splice it in rather than re-encode it.
    by = b',"u":' + json.dumps(user, ensure_ascii=False).encode() if user else b""
    return b'{"k":"s","v":%d,"t":%d%s,"p":%s}' % (version, ts_ms, by, patch_json.encode())


def encode_grant(user: str, role: str, by: str, ts_ms: int, invite_id: str = "") -> bytes:
    entry: dict[str, Any] = {"k": "g", "u": user, "r": role, "by": by, "t": ts_ms}
    if invite_id:
        entry["id"] = invite_id
    return _encode(entry)


def encode_invite(
    invite_id: str, invite_hash: str, role: str, expires_ms: int, by: str, ts_ms: int
) -> bytes:
    entry = {"k": "i", "id": invite_id, "h": invite_hash, "r": role, "x": expires_ms}
    return _encode({**entry, "by": by, "t": ts_ms})


def encode_revoke(invite_id: str, by: str, ts_ms: int) -> bytes:
    return _encode({"k": "x", "id": invite_id, "by": by, "t": ts_ms})


def encode_branch(head: int, by: str, ts_ms: int) -> bytes:
    return _encode({"k": "b", "h": head, "by": by, "t": ts_ms})


def encode_rename(title: str, by: str, ts_ms: int) -> bytes:
    return _encode({"k": "n", "n": title, "by": by, "t": ts_ms})


def encode_delete(by: str, ts_ms: int, purge_ms: int) -> bytes:
    return _encode({"k": "d", "by": by, "t": ts_ms, "x": purge_ms})


def encode_restore(by: str, ts_ms: int) -> bytes:
    return _encode({"k": "r", "by": by, "t": ts_ms})


def encode_answer_start(prompt_seq: int, ts_ms: int, by: str = "") -> bytes:
    entry: dict[str, Any] = {"k": "a", "p": prompt_seq, "t": ts_ms}
    if by:
        entry["by"] = by
    return _encode(entry)


def encode_answer_end(
    answer_seq: int,
    content: str,
    status: str,
    error: str,
    ts_ms: int,
    usage: tuple[int, int, int] = (0, 0, 0),
    cancelled_by: str = "",
) -> bytes:
    entry: dict[str, Any] = {"k": "e", "a": answer_seq, "c": content, "s": status, "t": ts_ms}
    if error:
        entry["err"] = error
    if cancelled_by:
        entry["cb"] = cancelled_by
    if any(usage):
        entry["pt"], entry["ct"], entry["rg"] = usage
    return _encode(entry)


def encode_answer_restart(answer_seq: int, content: str, error: str, ts_ms: int) -> bytes:
    """The interrupted text of an answer that starts again (kind "v": a version of it)."""
    return _encode({"k": "v", "a": answer_seq, "c": content, "err": error, "t": ts_ms})


def acted_by(user: str, imported_by: str | None) -> str:
    """Who the API and the audit name as having done it: the importer for what an import
    stored (the name the file gives is never shown as an author)."""
    return user if imported_by is None else imported_by


def imported_by_of(e: Event) -> str | None:
    """Who imported `e` (None: not imported, or not a log event)."""
    if isinstance(e, MessageEvent):
        return e.message.imported_by
    imported_by: str | None = getattr(e, "imported_by", None)
    return imported_by


IMPORTED_BY = "ib"
"""The stored key of `imported_by`, on every entry an import stored."""


def mark_imported(raw: bytes, by: str) -> bytes:
    """An encoded entry (a JSON object) marked as stored by `by`'s import."""
    return raw[:-1] + b',"ib":' + json.dumps(by, ensure_ascii=False).encode() + b"}"


def decode(seq: int, raw: bytes) -> LogEvent:
    entry = json.loads(raw)
    kind = entry["k"]
    ts = int(entry["t"])
    ib: str | None = entry.get(IMPORTED_BY)
    if kind == "m":
        message = Message(
            seq,
            entry["r"],
            entry["c"],
            entry.get("u", ""),
            ts,
            entry.get("id", ""),
            reply_to=int(entry.get("rt", 0)),
            attachments=tuple(
                (str(a[0]), str(a[1]), str(a[2]), int(a[3])) for a in entry.get("at", ())
            ),
            imported_by=ib,
        )
        return MessageAppended(seq, ts, message)
    if kind == "f":
        return FeedbackChanged(seq, ts, int(entry["s"]), entry["u"], entry["r"], entry["c"], ib)
    if kind == "s":
        patch = json.dumps(entry["p"], separators=(",", ":"), ensure_ascii=False)
        return StateChanged(seq, ts, patch, int(entry["v"]), entry.get("u", ""), ib)
    if kind == "a":
        return AnswerStarted(seq, ts, int(entry["p"]), entry.get("by", ""), ib)
    if kind == "e":
        message = Message(
            seq,
            "assistant",
            entry["c"],
            "",
            ts,
            "",
            int(entry["a"]),
            entry["s"],
            int(entry.get("pt", 0)),
            int(entry.get("ct", 0)),
            int(entry.get("rg", 0)),
            imported_by=ib,
        )
        return AnswerEnded(seq, ts, message, entry.get("err", ""), entry.get("cb", ""))
    if kind == "v":
        message = Message(seq, "assistant", entry["c"], "", ts, "", int(entry["a"]), INTERRUPTED)
        return AnswerRestarted(seq, ts, message, entry.get("err", ""))
    if kind == "g":
        return AccessChanged(
            seq, ts, entry["by"], entry["u"], entry["r"], invite_id=entry.get("id", "")
        )
    if kind == "i":
        return AccessChanged(
            seq, ts, entry["by"], "", entry["r"], entry["id"], entry["h"], int(entry["x"])
        )
    if kind == "x":
        return AccessChanged(seq, ts, entry["by"], invite_id=entry["id"], revoked=True)
    if kind == "b":
        return BranchSelected(seq, ts, int(entry["h"]), entry["by"], ib)
    if kind == "n":
        return ThreadChanged(seq, ts, entry["by"], title=entry["n"], imported_by=ib)
    if kind == "d":
        return ThreadChanged(seq, ts, entry["by"], deleted=True, purge_ms=int(entry["x"]))
    if kind == "r":
        return ThreadChanged(seq, ts, entry["by"], restored=True)
    raise ValueError(f"unknown log entry kind {kind!r} at seq {seq}")
