"""Feedback on assistant answers (thumbs up/down and a comment), kept for evaluation: a log
write of the owner actor (a mixin of SessionActor, actor.py).

Contract: owners and members rate (viewers: PERMISSION_DENIED); only assistant messages can be
rated (else INVALID_ARGUMENT); a user's new feedback on a message replaces their earlier one;
rating UNSPECIFIED with no comment withdraws it. Each change is a FeedbackChanged event: durable
when acknowledged, streamed, in the audit log and in the session's export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.actor_parts import ActorParts
from session_service.errors import InvalidArgument, NotFound
from session_service.log.events import FeedbackChanged, decode, encode_feedback, now_ms

if TYPE_CHECKING:
    pass

MAX_COMMENT_CHARS = 2000


class FeedbackOps(ActorParts):
    async def set_feedback(
        self, caller: Caller, message_seq: int, rating: str, comment: str, user: str = ""
    ) -> int:
        """Stores `caller`'s feedback on an assistant message; returns the event's seq."""
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(f"comment must be at most {MAX_COMMENT_CHARS} characters")
        async with self._lock:
            self._check_writable()
            s = self.session
            access.require(s, caller, access.WRITE)
            if access.claims(s, caller):  # nothing to rate in a session nobody owns
                raise NotFound(access.NOT_FOUND)
            try:
                message = s.message_at(message_seq)
            except KeyError:
                message = None
            if message is None or message.role != "assistant":
                raise InvalidArgument(f"seq {message_seq} is no assistant message of this session")
            by = caller.user if caller.enforced else user
            entry = encode_feedback(message_seq, by, rating, comment, now_ms())
            result = await self._write([entry])
            event = decode(result.first_seq, entry)
            assert isinstance(event, FeedbackChanged)
            s.apply(event)
            self._publish(event)
            return event.seq
