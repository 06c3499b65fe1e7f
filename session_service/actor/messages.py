"""Posting to a session: a message, a prompt (with the start of its answer) or a state patch,
each stored with one fenced write of the actor (session_actor.py) it takes.

Contract: a write is checked (open, not moving, access, message role, reply, attachments, queue)
under the actor's lock before anything is stored; a repeated `client_id` returns what the first
call stored (duplicate=True) and stores nothing; an unowned session is claimed by its first
writer right before the write itself.
"""

from __future__ import annotations

from typing import Any

from session_service.actor import access
from session_service.actor.access import ANONYMOUS, Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import Conflict, InvalidArgument, TooBusy
from session_service.log.events import (
    AnswerStarted,
    Message,
    MessageAppended,
    StateChanged,
    encode_answer_start,
    encode_message,
    encode_state,
    now_ms,
)
from session_service.log.merge_patch import apply_patch, dump_json
from session_service.store.attachments import valid_filename, valid_sha

MAX_ATTACHMENTS = 10
Refs = tuple[tuple[str, str], ...]
"""Files to attach: (sha256, filename)."""
AttachedRefs = tuple[tuple[str, str, str, int], ...]


class MessageOps:
    """The message and state writes of one actor."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def _attachments(self, wanted: Refs, caller: Caller) -> AttachedRefs:
        """The refs of files the caller uploaded (any uploader's with AUTH_MODE=off), with
        their stored size and media type; INVALID_ARGUMENT for anything else."""
        if len(wanted) > MAX_ATTACHMENTS:
            raise InvalidArgument(f"a message can carry at most {MAX_ATTACHMENTS} files")
        refs = []
        for sha, name in wanted:
            valid_sha(sha)
            known = await self._actor.known_attachment(sha, caller)
            if known is None:
                raise InvalidArgument(f"attachment {sha} was not uploaded by you")
            refs.append((sha, valid_filename(name or sha[:12]), known[1], known[0]))
        return tuple(refs)

    def _check_reply(self, reply_to: int) -> None:
        """A reply names an earlier message of this session."""
        if reply_to:
            self._actor.session.require_message(reply_to, "reply_to")

    async def _repeat_before_window(self, client_id: str) -> int:
        """The seq of a client id's write before a windowed image's window (0: none). A
        repeat is answered as one even when the request would now be refused, as with a whole
        image (whose client ids are all in memory); asked only on that refusal path."""
        if not client_id or self._actor.session.whole:
            return 0
        return await self._actor.stored_client_id(client_id)

    async def _stored(self, seq: int) -> Message:
        """The message at `seq` (a repeated client id's), read from Redis if before the window."""
        if seq <= self._actor.session.base_seq:
            await self._actor.whole()
        return self._actor.session.message_at(seq)

    async def append_message(
        self,
        role: str,
        content: str,
        user: str,
        client_id: str,
        caller: Caller = ANONYMOUS,
        reply_to: int = 0,
        attachments: Refs = (),
    ) -> tuple[Message, bool]:
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            user = actor.authorize_write(caller) or user
            access.require_message_role(s, caller, role)
            if client_id in s.client_ids:
                return s.message_at(s.client_ids[client_id]), True
            try:
                self._check_reply(reply_to)
                refs = await self._attachments(attachments, caller)
            except InvalidArgument:
                if seq := await self._repeat_before_window(client_id):
                    return await self._stored(seq), True
                raise
            await actor.claim_unowned(caller)
            ts = now_ms()
            entry = encode_message(role, content, user, ts, client_id, reply_to, refs)
            result = await actor.write([entry], client_id=client_id)
            if result.duplicate:
                return await self._stored(result.first_seq), True
            message = Message(
                result.first_seq,
                role,
                content,
                user,
                ts,
                client_id,
                reply_to=reply_to,
                attachments=refs,
            )
            event = MessageAppended(result.first_seq, ts, message)
            s.apply(event)
            actor.publish(event)
            return event.message, False

    async def update_state(
        self,
        patch: dict[str, Any],
        patch_json: str,
        expected_version: int | None,
        caller: Caller = ANONYMOUS,
    ) -> tuple[int, int]:
        """Applies a merge patch; returns (version, seq)."""
        actor = self._actor
        limit = actor.limits.max_state_bytes
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            user = actor.authorize_write(caller)
            if expected_version is not None and expected_version != s.version:
                raise Conflict(f"expected version {expected_version}, session is at {s.version}")
            new_state = apply_patch(s.state, patch)
            size = s.state_size + len(patch_json.encode())
            if size > limit:
                size = len(dump_json(new_state).encode())
                if size > limit:
                    raise InvalidArgument(f"state would be {size} bytes; the limit is {limit}")
            await actor.claim_unowned(caller)
            ts = now_ms()
            version = s.version + 1
            result = await actor.write(
                [encode_state(patch_json, version, ts, user)],
                expected_version=expected_version,
                version_increment=1,
            )
            event = StateChanged(result.first_seq, ts, patch_json, version, user)
            s.apply(event, new_state)
            s.state_size = size
            actor.publish(event)
            return version, event.seq

    async def send_prompt(
        self,
        content: str,
        user: str,
        client_id: str,
        caller: Caller = ANONYMOUS,
        reply_to: int = 0,
        attachments: Refs = (),
    ) -> tuple[Message, int, bool]:
        """Stores the user message and the answer's start in one script; returns
        (user message, answer seq, duplicate)."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            user = actor.authorize_write(caller) or user
            if client_id in s.client_ids:
                seq = s.client_ids[client_id]
                return s.message_at(seq), s.answer_of_prompt.get(seq, 0), True
            try:
                self._check_reply(reply_to)
                refs = await self._attachments(attachments, caller)
                actor.check_queue()
            except (InvalidArgument, TooBusy):
                if seq := await self._repeat_before_window(client_id):
                    return await self._stored(seq), s.answer_of_prompt.get(seq, 0), True
                raise
            await actor.claim_unowned(caller)
            ts = now_ms()
            prompt_seq = s.last_seq + 1
            entries = [
                encode_message("user", content, user, ts, client_id, reply_to, refs),
                encode_answer_start(prompt_seq, ts),
            ]
            result = await actor.write(entries, client_id=client_id)
            if result.duplicate:
                seq = result.first_seq
                return await self._stored(seq), s.answer_of_prompt.get(seq, 0), True
            message = Message(
                prompt_seq,
                "user",
                content,
                user,
                ts,
                client_id,
                reply_to=reply_to,
                attachments=refs,
            )
            appended = MessageAppended(prompt_seq, ts, message)
            started = AnswerStarted(prompt_seq + 1, ts, prompt_seq)
            for event in (appended, started):
                s.apply(event)
                actor.publish(event)
            actor.answers.start()
            return message, started.seq, False
