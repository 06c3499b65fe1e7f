"""The live owner of one session on this pod: serialises writes, persists, then broadcasts.

Contract:
- Writes to one session run one at a time (`_lock`); different sessions run concurrently.
- An event reaches memory and subscribers only after Redis acknowledged it, in seq order.
- Answers run one at a time in prompt order (answering.py): each delta batch is stored, then
  sent (one Redis call per batch, never per token); the assistant message is stored before
  AnswerEnded is sent.
- When a write's outcome is unknown (Redis error) or the owner was fenced, the actor closes:
  subscribers get UNAVAILABLE and resume from their cursor on a fresh activation, which reloads
  the truth from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from session_service.actor import access
from session_service.actor.access import ANONYMOUS, Caller
from session_service.actor.answering import Answering, AnswerSource
from session_service.errors import (
    Conflict,
    Fenced,
    InvalidArgument,
    Moving,
    SessionClosed,
    SessionError,
    StoreFull,
    StoreUnavailable,
    TooBusy,
)
from session_service.features.branches.ops import BranchOps
from session_service.features.feedback.ops import FeedbackOps
from session_service.features.rooms.ops import RoomOps
from session_service.features.threads.auto_title import AutoTitle
from session_service.features.threads.ops import ThreadOps
from session_service.features.transfer.ops import TransferOps
from session_service.limits import Limits
from session_service.log.events import (
    AnswerStarted,
    CaughtUp,
    Event,
    Message,
    MessageAppended,
    PresenceChanged,
    StateChanged,
    encode_answer_start,
    encode_grant,
    encode_message,
    encode_state,
    now_ms,
)
from session_service.log.merge_patch import apply_patch, dump_json
from session_service.log.session import Session
from session_service.log.subscriber import Subscriber
from session_service.metrics import SessionMetrics
from session_service.store import footprint, thread_index
from session_service.store.attachments import valid_filename, valid_sha
from session_service.store.sessions import Appended, Store

logger = logging.getLogger(__name__)
MAX_ATTACHMENTS = 10
Refs = tuple[tuple[str, str], ...]
"""Files to attach: (sha256, filename)."""
AttachedRefs = tuple[tuple[str, str, str, int], ...]


class SessionActor(AutoTitle, Answering, RoomOps, ThreadOps, FeedbackOps, TransferOps, BranchOps):
    # Each half declares what it uses from the others as stubs; a half that implements a
    # method must come before the halves that only declare it (AutoTitle before Answering).
    """Owns `session` while open. Only this object writes the session's keys on this pod."""

    def __init__(
        self,
        session: Session,
        store: Store,
        ai: AnswerSource,
        limits: Limits,
        on_close: Callable[[SessionActor], None],
        pod_id: str = "",
        metrics: SessionMetrics | None = None,
    ) -> None:
        self.session = session
        self._store = store
        self._ai = ai
        self._limits = limits
        self._on_close = on_close
        self._lock = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None
        self._pod_id = pod_id
        self._metrics = metrics or SessionMetrics()
        self.closed = False
        self.moving = False
        """Set while handing the session to another pod: reads go on, writes get Moving."""
        self.lease_deadline = float("inf")
        """Monotonic time after which this pod must consider its lease gone."""
        self.last_used = time.monotonic()
        self._online: tuple[str, ...] = ()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while anything is attached: subscribers, answers, a write in flight."""
        s = self.session
        return bool(s.subscribers or s.open_answers or self._lock.locked())

    def close(self, reason: SessionError) -> None:
        """Drops the in-memory owner; subscribers get `reason` after what they already have."""
        if self.closed:
            return
        self.closed = True
        for subscriber in list(self.session.subscribers):
            subscriber.close(reason)
        self.session.subscribers.clear()
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
        self._on_close(self)

    async def passivate(self, reason: SessionError | None = None) -> None:
        """Closes, then releases the lease and records the last access time; the next call
        activates the session again (here or wherever the ring says)."""
        self.close(reason or SessionClosed("session passivated; resubscribe"))
        s = self.session
        with contextlib.suppress(SessionError):
            await self._store.release(s.session_id, self._pod_id, s.epoch, s.accessed_ms)

    async def hand_off(self, timeout_s: float) -> None:
        """Moves the session off this pod: no new writes, answers finish (up to timeout_s),
        the write in flight completes, then the lease is released for the new owner."""
        self.moving = True
        deadline = time.monotonic() + timeout_s
        while True:
            worker = self._worker
            if worker is not None and not worker.done():
                await asyncio.wait({worker}, timeout=max(0.0, deadline - time.monotonic()))
            async with self._lock:
                # A prompt whose write was in flight when the move began may have just started
                # an answer: let it finish too, unless time is up.
                answering = self._worker is not None and not self._worker.done()
                if not answering or time.monotonic() >= deadline:
                    await self.passivate(Moving("session moved to another pod; resubscribe"))
                    break
        logger.info(
            "session handed off",
            extra={"session_id": self.session.session_id, "pod_id": self._pod_id},
        )

    def _check_open(self) -> None:
        if not self.closed and time.monotonic() > self.lease_deadline:
            self.close(Moving("this pod's lease on the session may have expired; retry"))
        if self.closed:
            raise SessionClosed("session owner closed; retry")
        self.last_used = time.monotonic()
        self.session.accessed_ms = now_ms()

    def _check_writable(self) -> None:
        self._check_open()
        if self.moving:
            raise Moving("session is moving to another pod; retry")

    async def _write(
        self,
        entries: list[bytes],
        *,
        client_id: str = "",
        expected_version: int | None = None,
        version_increment: int = 0,
        ended_answer: int = 0,
    ) -> Appended:
        """One script call. The caller holds the lock; the predicted seqs must come back."""
        s = self.session
        predicted = s.last_seq + 1
        try:
            result = await self._store.append(
                s.session_id,
                s.epoch,
                s.accessed_ms,
                entries,
                client_id=client_id,
                expected_version=expected_version,
                version_increment=version_increment,
                ended_answer=ended_answer,
                index=thread_index.update_for(s, entries),
                log_limit=footprint.log_limit(entries, self._limits),
                claim=footprint.claim_of(s.owner, entries, self._limits),
            )
        except StoreFull:
            if ended_answer:  # the answer stays open in Redis; the next activation resumes it
                self.close(SessionClosed("Redis is full; the answer resumes once it has room"))
            raise
        except Fenced as exc:
            # Refused inside Redis, so nothing was stored: route again (retry-safe).
            self.close(SessionClosed(f"owner lost the session: {exc}"))
            raise SessionClosed(f"this pod lost the session: {exc}") from exc
        except StoreUnavailable as exc:
            self.close(SessionClosed(f"owner lost the session: {exc}"))
            raise
        if not result.duplicate and result.first_seq != predicted:
            self.close(SessionClosed("in-memory log diverged from Redis; reloading"))
            raise StoreUnavailable("session reloading; retry")
        if result.duplicate and result.first_seq > s.last_seq:
            self.close(SessionClosed("in-memory log behind Redis; reloading"))
            raise StoreUnavailable("session reloading; retry")
        return result

    def _publish(self, event: Event) -> None:
        dropped = self.session.broadcast(event)
        if dropped:
            self._metrics.dropped_subscribers.inc(dropped)

    # -- operations ----------------------------------------------------------------------------

    def read(self, caller: Caller = ANONYMOUS, need: str = access.READ) -> Session:
        """The session for a read; reads need no lock (they see acknowledged events only)."""
        self._check_open()
        access.require(self.session, caller, need)
        return self.session

    def _authorize_write(self, caller: Caller) -> str:
        """Checks a write by `caller` (the lock is held); returns the user to store with it."""
        access.require(self.session, caller, access.WRITE)
        return caller.user if caller.enforced else ""

    async def _claim(self, caller: Caller) -> None:
        """Makes `caller` the owner of an unowned session; called once a write has passed
        every check, right before it is stored, so a refused write claims nothing."""
        if access.claims(self.session, caller):
            await self._store_access(encode_grant(caller.user, access.OWNER, caller.user, now_ms()))

    async def _attachments(self, wanted: Refs, caller: Caller) -> AttachedRefs:
        """The refs of files the caller uploaded (any uploader's with AUTH_MODE=off), with
        their stored size and media type; INVALID_ARGUMENT for anything else."""
        if len(wanted) > MAX_ATTACHMENTS:
            raise InvalidArgument(f"a message can carry at most {MAX_ATTACHMENTS} files")
        refs = []
        for sha, name in wanted:
            valid_sha(sha)
            known = await self._store.attachments.known(
                sha, caller.user if caller.enforced else None
            )
            if known is None:
                raise InvalidArgument(f"attachment {sha} was not uploaded by you")
            refs.append((sha, valid_filename(name or sha[:12]), known[1], known[0]))
        return tuple(refs)

    def _check_reply(self, reply_to: int) -> None:
        """A reply names an earlier message of this session."""
        if reply_to:
            self.session.message_for(reply_to, "reply_to")

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
        async with self._lock:
            self._check_writable()
            s = self.session
            user = self._authorize_write(caller) or user
            access.require_message_role(s, caller, role)
            if client_id in s.client_ids:
                return s.message_at(s.client_ids[client_id]), True
            self._check_reply(reply_to)
            refs = await self._attachments(attachments, caller)
            await self._claim(caller)
            ts = now_ms()
            entry = encode_message(role, content, user, ts, client_id, reply_to, refs)
            result = await self._write([entry], client_id=client_id)
            if result.duplicate:
                return s.message_at(result.first_seq), True
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
            self._publish(event)
            return event.message, False

    async def update_state(
        self,
        patch: dict[str, Any],
        patch_json: str,
        expected_version: int | None,
        caller: Caller = ANONYMOUS,
    ) -> tuple[int, int]:
        """Applies a merge patch; returns (version, seq)."""
        async with self._lock:
            self._check_writable()
            s = self.session
            user = self._authorize_write(caller)
            if expected_version is not None and expected_version != s.version:
                raise Conflict(f"expected version {expected_version}, session is at {s.version}")
            new_state = apply_patch(s.state, patch)
            size = s.state_size + len(patch_json.encode())
            if size > self._limits.max_state_bytes:
                size = len(dump_json(new_state).encode())
                if size > self._limits.max_state_bytes:
                    raise InvalidArgument(
                        f"state would be {size} bytes; the limit is {self._limits.max_state_bytes}"
                    )
            await self._claim(caller)
            ts = now_ms()
            version = s.version + 1
            result = await self._write(
                [encode_state(patch_json, version, ts, user)],
                expected_version=expected_version,
                version_increment=1,
            )
            event = StateChanged(result.first_seq, ts, patch_json, version, user)
            s.apply(event, new_state)
            s.state_size = size
            self._publish(event)
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
        async with self._lock:
            self._check_writable()
            s = self.session
            user = self._authorize_write(caller) or user
            if client_id in s.client_ids:
                seq = s.client_ids[client_id]
                return s.message_at(seq), s.answer_of_prompt.get(seq, 0), True
            self._check_reply(reply_to)
            refs = await self._attachments(attachments, caller)
            if len(s.open_answers) > self._limits.max_queued_prompts:
                raise TooBusy(
                    f"{len(s.open_answers)} answers are waiting in this session; retry later"
                )
            await self._claim(caller)
            ts = now_ms()
            prompt_seq = s.last_seq + 1
            entries = [
                encode_message("user", content, user, ts, client_id, reply_to, refs),
                encode_answer_start(prompt_seq, ts),
            ]
            result = await self._write(entries, client_id=client_id)
            if result.duplicate:
                seq = result.first_seq
                return s.message_at(seq), s.answer_of_prompt.get(seq, 0), True
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
                self._publish(event)
            self._start_worker()
            return message, started.seq, False

    def subscribe(
        self, after_seq: int | None, after_offset: int, caller: Caller = ANONYMOUS
    ) -> tuple[Subscriber, list[Event]]:
        """Registers a subscriber and returns what it missed; nothing can fall in between."""
        self.read(caller)
        subscriber = Subscriber(self._limits.subscriber_queue, caller.user)
        replay = self.session.replay(after_seq, after_offset)
        self.session.subscribers.add(subscriber)
        if subscriber.user:
            before = self._online
            self._presence_changed()  # queued for every subscriber, this one after its replay
            if self._online == before:  # nothing broadcast: tell the newcomer alone
                caught_up = replay[-1]
                assert isinstance(caught_up, CaughtUp)
                replay.append(PresenceChanged(caught_up.seq, caught_up.offset, before))
        return subscriber, replay

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.session.subscribers.discard(subscriber)
        self.last_used = time.monotonic()
        if subscriber.user:
            self._presence_changed()
