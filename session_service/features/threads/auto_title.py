"""Auto-titles a thread from its first exchange (docs/threads.md): the actor's after-answer hook
(`SessionActor(after_answer=AutoTitle(ai, limits))`, wired by server.py through the registry).

Contract: after an answer completes in a thread that has no title yet (never renamed), the owner
asks the AI service for a title of the prompt and the answer (at most `auto_title_tokens` model
tokens), and stores it as a rename by `AUTO_TITLE_BY`, like a person's rename: fenced, durable,
streamed, listed. Best effort: a failed or empty title is logged and not retried (the next
completed answer tries again while the thread has no title). A person's rename, before or
after, wins. The title call's tokens are not charged to anyone's budget.
"""

from __future__ import annotations

import logging
import re

from session_service.actor.answering import AnswerSource
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument, LimitReached, SessionError, StoreFull
from session_service.limits import Limits
from session_service.log import validate
from session_service.log.events import encode_rename, now_ms
from session_service.log.session import OpenAnswer

logger = logging.getLogger(__name__)

AUTO_TITLE_BY = "auto-title"
INSTRUCTION = (
    "Write a title of at most six words for the conversation below. "
    "Answer with the title only: no quotes, no punctuation at the end."
)
EXCERPT_CHARS = 2000


def clean(text: str) -> str:
    """The model's answer as a title: one line, no wrapping quotes, at most MAX_TITLE_CHARS."""
    line = " ".join(text.split())
    line = re.sub(r'^(title:\s*)?["\'“”«]+|["\'“”»]+$', "", line, flags=re.I).strip(" .")
    return line[: validate.MAX_TITLE_CHARS].strip()


def needs_title(actor: SessionActor) -> bool:
    s = actor.session
    return not s.renamed and not s.deleted_ms and not actor.closed


class AutoTitle:
    """Titles the thread of `actor` after `answer` completed, if it has none yet."""

    def __init__(self, ai: AnswerSource, limits: Limits) -> None:
        self._ai = ai
        self._limits = limits

    async def __call__(self, actor: SessionActor, answer: OpenAnswer) -> None:
        if not self._limits.auto_title_tokens or not needs_title(actor):
            return
        s = actor.session
        prompt = s.message_at(answer.prompt_seq).content[:EXCERPT_CHARS]
        reply = "".join(answer.batches)[:EXCERPT_CHARS]
        turns = [("system", INSTRUCTION), ("user", f"{prompt}\n\n---\n\n{reply}")]
        text = ""
        try:
            async for chunk, _ in self._ai.generate(
                turns, f"{s.session_id}-title", [0, 0, 0], self._limits.auto_title_tokens
            ):
                text += chunk
            title = validate.title(clean(text))
        except (SessionError, InvalidArgument) as exc:
            logger.info("no auto title: %s", exc, extra={"session_id": s.session_id})
            return
        async with actor.lock:
            if not needs_title(actor):
                return
            actor.check_writable()
            entry = encode_rename(title, AUTO_TITLE_BY, now_ms())
            try:
                await actor.store([entry])
            except (LimitReached, StoreFull) as exc:  # a full log or Redis: no title, no harm
                logger.info("no auto title: %s", exc, extra={"session_id": s.session_id})
