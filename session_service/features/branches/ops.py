"""Edit, regenerate and select branches (docs/branches.md): log writes of the owner actor they
take (actor/session_actor.py). Each operation is one write: the head move and what follows it
are stored together or not at all."""

from __future__ import annotations

from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.log.events import (
    AnswerStarted,
    LogEvent,
    Message,
    encode_answer_start,
    encode_branch,
    encode_message,
    now_ms,
)


class BranchOps:
    """The branch operations of one actor."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def _store_all(self, entries: list[bytes]) -> list[LogEvent]:
        """Stores entries with one write, then applies and publishes them in order; an answer
        among them starts."""
        stored = await self._actor.store(entries)
        if any(isinstance(e, AnswerStarted) for e in stored):
            self._actor.answers.start()
        return stored

    async def edit_message(self, caller: Caller, seq: int, content: str) -> tuple[Message, int]:
        """A sibling of a user or system message with new text, on a new active branch; an
        edited user message gets an answer. Returns (the new message, answer seq or 0)."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            user = actor.authorize_write(caller)
            original = s.message_for(seq, "message_seq")
            user = user or original.user
            if original.role == "assistant":
                raise InvalidArgument("answers cannot be edited; regenerate them instead")
            access.require_message_role(s, caller, original.role)
            if original.role == "user":
                actor.check_queue()
            ts = now_ms()
            message_seq = s.last_seq + 2
            entries = [
                encode_branch(s.tree.parent[seq], caller.user, ts),
                encode_message(
                    original.role, content, user, ts, "", original.reply_to, original.attachments
                ),
            ]
            if original.role == "user":
                entries.append(encode_answer_start(message_seq, ts))
            await self._store_all(entries)
            return s.message_at(message_seq), message_seq + 1 if original.role == "user" else 0

    async def regenerate(self, caller: Caller, seq: int) -> int:
        """A new answer to the prompt of the answer at `seq`, on a new active branch; returns
        the new answer's seq."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            actor.authorize_write(caller)
            answer = s.message_for(seq, "message_seq")
            if answer.role != "assistant" or not answer.answer_seq:
                raise InvalidArgument("only answers can be regenerated; edit a prompt instead")
            actor.check_queue()
            started = s.event_at(answer.answer_seq)
            assert isinstance(started, AnswerStarted)
            ts = now_ms()
            await self._store_all(
                [
                    encode_branch(started.prompt_seq, caller.user, ts),
                    encode_answer_start(started.prompt_seq, ts, caller.user),
                ]
            )
            return s.last_seq

    async def select_branch(self, caller: Caller, seq: int) -> tuple[int, int]:
        """Makes the branch through `seq` active; returns (new head, event seq or 0)."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            access.require(s, caller, access.WRITE)
            s.message_for(seq, "message_seq")
            leaf = s.tree.leaf_of(seq)
            if leaf == s.tree.head:
                return leaf, 0
            stored = await self._store_all([encode_branch(leaf, caller.user, now_ms())])
            return leaf, stored[0].seq
