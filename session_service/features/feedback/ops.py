"""Feedback on assistant answers (thumbs up/down and a comment), kept for evaluation: a log
write of the owner actor it takes (actor/session_actor.py).

Contract: owners and members rate (viewers: PERMISSION_DENIED); only assistant messages can be
rated (else INVALID_ARGUMENT); a user's new feedback on a message replaces their earlier one;
rating UNSPECIFIED with no comment withdraws it. Each change is a FeedbackChanged event: durable
when acknowledged, streamed, in the audit log and in the session's export.
"""

from __future__ import annotations

from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument, NotFound
from session_service.log import validate
from session_service.log.events import FeedbackChanged, encode_feedback, now_ms


class FeedbackOps:
    """The feedback operation of one actor."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def set_feedback(
        self, caller: Caller, message_seq: int, rating: str, comment: str, user: str = ""
    ) -> int:
        """Stores `caller`'s feedback on an assistant message; returns the event's seq."""
        if len(comment) > validate.MAX_COMMENT_CHARS:
            raise InvalidArgument(
                f"comment must be at most {validate.MAX_COMMENT_CHARS} characters"
            )
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            access.require(s, caller, access.WRITE)
            if access.claims(s, caller):  # nothing to rate in a session nobody owns
                raise NotFound(access.NOT_FOUND)
            known = message_seq in s.tree.parent  # every message, in memory or not
            message = (await actor.messages_at([message_seq]))[0] if known else None
            if message is None or message.role != "assistant":
                raise InvalidArgument(f"seq {message_seq} is no assistant message of this session")
            by = caller.user if caller.enforced else user
            entry = encode_feedback(message_seq, by, rating, comment, now_ms())
            [event] = await actor.store([entry])
            assert isinstance(event, FeedbackChanged)
            return event.seq
