"""What a User (tests/support/secure.py) does in several calls: a prompt and its answer,
feedback, every page of an export."""

from __future__ import annotations

import json
from typing import Any

from durablechat.v1 import (
    export_pb2,
    session_pb2,
)
from tests.support.secure import User


async def export(user: User, sid: str) -> tuple[list[str], int]:
    """Every page concatenated, as lines; and how many pages there were."""
    text, token, pages = "", "", 0
    while True:
        reply = await user.call(
            "ExportSession", export_pb2.ExportSessionRequest(session_id=sid, page_token=token)
        )
        text += reply.jsonl
        pages += 1
        token = reply.next_page_token
        if not token:
            return text.removesuffix("\n").split("\n"), pages  # (not splitlines: U+2028)


def imported_by(lines: list[str], importer: str) -> list[str]:
    """Export lines of an imported copy as they were before the import: every event line must
    carry `importedBy` = the importer (docs/export.md, "Authorship"), dropped here."""
    out = []
    for line in lines:
        fields = json.loads(line)
        assert fields.pop("importedBy") == importer, line
        out.append(json.dumps(fields, separators=(",", ":"), ensure_ascii=False))
    return out


async def answered(user: User, sid: str, prompt: str, reply_to: int = 0) -> tuple[int, Any]:
    """Sends a prompt and waits for its answer; returns (prompt seq, assistant message)."""
    sent = await user.call(
        "SendPrompt",
        session_pb2.SendPromptRequest(session_id=sid, content=prompt, reply_to=reply_to),
    )
    stream = user.subscribe(sid, after_seq=sent.answer_seq)
    try:
        while True:
            event = (await stream.read()).event
            if event.HasField("answer_ended"):
                return sent.user_message.seq, event.answer_ended.message
    finally:
        stream.cancel()


async def rate(user: User, sid: str, seq: int, rating: Any, comment: str = "") -> Any:
    request = session_pb2.SetFeedbackRequest(
        session_id=sid, message_seq=seq, rating=rating, comment=comment
    )
    return await user.call("SetFeedback", request)


async def ended(user: User, sid: str, answer_seq: int) -> Any:
    """Waits for the end of the answer started at `answer_seq`; returns its message."""
    stream = user.subscribe(sid, after_seq=answer_seq)
    try:
        while True:
            event = (await stream.read()).event
            done = event.HasField("answer_ended")
            if done and event.answer_ended.message.answer_seq == answer_seq:
                return event.answer_ended.message
    finally:
        stream.cancel()


async def prompt(user: User, sid: str, text: str) -> tuple[Any, Any]:
    sent = await user.call(
        "SendPrompt", session_pb2.SendPromptRequest(session_id=sid, content=text)
    )
    return sent.user_message, await ended(user, sid, sent.answer_seq)
