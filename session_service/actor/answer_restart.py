"""Replacing an answer whose model answers afresh (ANSWER_CONTINUE=restart, docs/resume.md).

Contract: called by the answer's worker when a model call that was to go on from the answer's
stored text instead answers the original request afresh, before the new answer's first batch is
stored (or, for an empty new answer, before its end). One epoch-checked write stores an
`AnswerRestarted` holding the stored text (an interrupted version: status INTERRUPTED, under
the answer's prompt) and deletes the answer's batches; then subscribers get the event and
replace the answer's text, and the new batches count from offset 0. So what is stored as the
answer, and what any client shows of it once it follows the events, is one generation's text,
never two glued together. On crash: before the write, nothing changed (the next owner goes on
from the same stored text); after it, the answer has no batches and the next owner starts it
afresh, no restart needed. A stale owner's write is refused (Fenced) and closes the actor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from session_service.log.events import (
    INTERRUPTED,
    AnswerRestarted,
    Message,
    encode_answer_restart,
    now_ms,
)

if TYPE_CHECKING:
    from session_service.actor.answering import AnswerOwner
    from session_service.log.session import OpenAnswer

logger = logging.getLogger(__name__)

RESTART_ERROR = "interrupted before the answer finished; the model answered again from the start"
"""The error stored with an interrupted version."""


async def restart(owner: AnswerOwner, answer: OpenAnswer) -> None:
    """Keeps `answer`'s stored text as an interrupted version and empties its batches (one
    write, under the owner's lock), then tells subscribers to replace the answer's text."""
    async with owner.lock:
        owner.check_open()
        s = owner.session
        ts = now_ms()
        content = "".join(answer.batches)
        result = await owner.write(
            [encode_answer_restart(answer.seq, content, RESTART_ERROR, ts)],
            ended_answer=answer.seq,  # its batches go in the same script
        )
        message = Message(
            result.first_seq, "assistant", content, "", ts, "", answer.seq, INTERRUPTED
        )
        event = AnswerRestarted(result.first_seq, ts, message, RESTART_ERROR)
        s.apply(event)
        owner.publish(event)
    logger.info(
        "answer restarted",
        extra={
            "session_id": s.session_id,
            "answer_seq": answer.seq,
            "interrupted_seq": result.first_seq,
            "interrupted_chars": len(content),
        },
    )
