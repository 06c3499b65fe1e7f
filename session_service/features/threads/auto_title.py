"""Auto-titles a thread from its first exchange (docs/threads.md): a mixin of SessionActor.

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
from typing import TYPE_CHECKING

from session_service.actor.actor_parts import ActorParts
from session_service.errors import InvalidArgument, LimitReached, SessionError, StoreFull
from session_service.features.threads.ops import MAX_TITLE_CHARS, valid_title
from session_service.log.events import ThreadChanged, decode, encode_rename, now_ms

if TYPE_CHECKING:
    from session_service.actor.answering import AnswerSource
    from session_service.limits import Limits
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
    return line[:MAX_TITLE_CHARS].strip()


class AutoTitle(ActorParts):
    _ai: AnswerSource
    _limits: Limits
    closed: bool

    def _needs_title(self) -> bool:
        s = self.session
        renamed = any(isinstance(e, ThreadChanged) and e.title for e in s.events)
        return not renamed and not s.deleted_ms and not self.closed

    async def _auto_title(self, answer: OpenAnswer) -> None:
        if not self._limits.auto_title_tokens or not self._needs_title():
            return
        s = self.session
        prompt = s.message_at(answer.prompt_seq).content[:EXCERPT_CHARS]
        reply = "".join(answer.batches)[:EXCERPT_CHARS]
        turns = [("system", INSTRUCTION), ("user", f"{prompt}\n\n---\n\n{reply}")]
        text = ""
        try:
            async for chunk, _ in self._ai.generate(
                turns, f"{s.session_id}-title", [0, 0, 0], self._limits.auto_title_tokens
            ):
                text += chunk
            title = valid_title(clean(text))
        except (SessionError, InvalidArgument) as exc:
            logger.info("no auto title: %s", exc, extra={"session_id": s.session_id})
            return
        async with self._lock:
            if not self._needs_title():
                return
            self._check_writable()
            entry = encode_rename(title, AUTO_TITLE_BY, now_ms())
            try:
                result = await self._write([entry])
            except (LimitReached, StoreFull) as exc:  # a full log or Redis: no title, no harm
                logger.info("no auto title: %s", exc, extra={"session_id": s.session_id})
                return
            event = decode(result.first_seq, entry)
            s.apply(event)
            self._publish(event)
