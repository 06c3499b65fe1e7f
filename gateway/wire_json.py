"""Session-service protos as the gateway's JSON and frames: names, times, messages, events."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from durablechat.v1 import common_pb2, session_pb2
from gateway.errors import GatewayError
from gateway.frames import (
    AnswerDelta,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    CaughtUp,
    Event,
    Logged,
)

ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_SYSTEM: "system",
}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}
ANSWER_STATUS_NAMES: dict[int, str] = {
    common_pb2.ANSWER_STATUS_COMPLETED: "COMPLETED",
    common_pb2.ANSWER_STATUS_INTERRUPTED: "INTERRUPTED",
    common_pb2.ANSWER_STATUS_FAILED: "FAILED",
    common_pb2.ANSWER_STATUS_CANCELLED: "CANCELLED",
}
RATING_NAMES: dict[int, str | None] = {
    common_pb2.RATING_UNSPECIFIED: None,
    common_pb2.RATING_UP: "up",
    common_pb2.RATING_DOWN: "down",
}
RATINGS_BY_NAME = {name: rating for rating, name in RATING_NAMES.items()}


def millis(ts: Timestamp) -> int:
    """Epoch milliseconds of a Timestamp; 0 when unset."""
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def message_json(message: common_pb2.Message) -> dict[str, Any]:
    """A stored message as the REST API shows it."""
    out: dict[str, Any] = {
        "seq": message.seq,
        "role": ROLE_NAMES.get(message.role, "unspecified"),
        "content": message.content,
        "user": message.user,
        "ts": millis(message.created_at),
    }
    if message.HasField("imported"):  # `user` is then the importer
        out["imported"] = imported_json(message.imported)
    if message.reply_to:
        out["replyTo"] = message.reply_to
    if message.attachments:
        out["attachments"] = [ref_json(a) for a in message.attachments]
    if message.feedback:
        out["feedback"] = [feedback_json(f) for f in message.feedback]
    return out


def feedback_json(f: common_pb2.Feedback) -> dict[str, Any]:
    out: dict[str, Any] = {
        "user": f.user,
        "rating": RATING_NAMES.get(f.rating),
        "comment": f.comment,
        "ts": millis(f.updated_at),
    }
    if f.HasField("imported"):
        out["imported"] = imported_json(f.imported)
    return out


def imported_json(mark: common_pb2.Imported) -> dict[str, str]:
    """What an import stored (docs/export.md): who imported it, and the name the file gave."""
    return {"by": mark.by, "namedUser": mark.named_user}


def ref_json(ref: common_pb2.AttachmentRef) -> dict[str, Any]:
    return {
        "sha256": ref.sha256,
        "filename": ref.filename,
        "mimeType": ref.mime_type,
        "size": ref.size,
    }


def history_json(message: dict[str, Any]) -> dict[str, Any]:
    """A message (as `message_json` made it) as the seed-000 `(GET_HISTORY)` answer shows it."""
    return {key: value for key, value in message.items() if key != "seq"}


def event_from_proto(event: session_pb2.SessionEvent) -> Event:
    """The plain value of one stream event.

    A kind this gateway does not know is Logged: every kind but deltas and CaughtUp is a log event.
    """
    kind = event.WhichOneof("kind")
    if kind == "answer_started":
        return AnswerStarted(seq=event.seq)
    if kind == "answer_delta":
        return AnswerDelta(answer_seq=event.seq, offset=event.offset, text=event.answer_delta.text)
    if kind == "answer_ended":
        message = event.answer_ended.message
        return AnswerEnded(
            seq=event.seq,
            answer_seq=message.answer_seq,
            content=message.content,
            status=ANSWER_STATUS_NAMES.get(message.answer_status, "UNSPECIFIED"),
            error=event.answer_ended.error,
        )
    if kind == "answer_restarted":
        answer_seq = event.answer_restarted.interrupted.answer_seq
        return AnswerRestarted(seq=event.seq, answer_seq=answer_seq)
    if kind == "caught_up":
        return CaughtUp(seq=event.seq, offset=event.offset)
    return Logged(seq=event.seq)


def state_object(state_json: str) -> dict[str, Any]:
    """The session service's state text as an object; anything else is its bug, not bad input."""
    try:
        state = json.loads(state_json or "{}")
    except ValueError as exc:
        raise GatewayError("session service returned state that is not JSON") from exc
    if not isinstance(state, dict):
        raise GatewayError("session service returned state that is not an object")
    return state
