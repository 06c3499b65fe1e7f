"""The live owner of one session on this pod: serialises writes, persists, then broadcasts.

Contract:
- Writes to one session run one at a time (`_lock`); different sessions run concurrently.
- An event reaches memory and subscribers only after Redis acknowledged it, in seq order.
- Answers run one at a time in prompt order; their deltas go to subscribers from memory (no
  Redis call per token); the assistant message is stored before AnswerEnded is sent.
- When a write's outcome is unknown (Redis error) or the owner was fenced, the actor closes:
  subscribers get UNAVAILABLE and resume from their cursor on a fresh activation, which reloads
  the truth from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from session_service.answer_batches import batches
from session_service.errors import (
    AnswerFailed,
    Conflict,
    Fenced,
    InvalidArgument,
    Moving,
    SessionClosed,
    SessionError,
    StoreUnavailable,
    TooBusy,
)
from session_service.events import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    AnswerEnded,
    AnswerStarted,
    Event,
    Message,
    MessageAppended,
    StateChanged,
    encode_answer_end,
    encode_answer_start,
    encode_message,
    encode_state,
)
from session_service.limits import Limits
from session_service.merge_patch import apply_patch, dump_json
from session_service.session import OpenAnswer, Session
from session_service.store import Appended, Store
from session_service.subscriber import Subscriber

logger = logging.getLogger(__name__)


class AnswerSource(Protocol):
    """Streams an answer as (text, model chunk count) items; raises AnswerFailed. A trailing
    assistant turn is a partial answer for the model to continue. The model's token counts are
    added to `usage` ([prompt, completion]) when it reports them."""

    def generate(
        self, turns: list[tuple[str, str]], request_id: str, usage: list[int]
    ) -> AsyncIterator[tuple[str, int]]: ...


RETRY_FIRST_S = 0.25
RETRY_MAX_S = 2.0


def now_ms() -> int:
    return int(time.time() * 1000)


class SessionActor:
    """Owns `session` while open. Only this object writes the session's keys on this pod."""

    def __init__(
        self,
        session: Session,
        store: Store,
        ai: AnswerSource,
        limits: Limits,
        on_close: Callable[[SessionActor], None],
        pod_id: str = "",
    ) -> None:
        self.session = session
        self._store = store
        self._ai = ai
        self._limits = limits
        self._on_close = on_close
        self._lock = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None
        self._pod_id = pod_id
        self.closed = False
        self.moving = False
        """Set while handing the session to another pod: reads go on, writes get Moving."""
        self.lease_deadline = float("inf")
        """Monotonic time after which this pod must consider its lease gone."""
        self.last_used = time.monotonic()

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
            )
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
        self.session.broadcast(event)

    # -- operations ----------------------------------------------------------------------------

    def read(self) -> Session:
        """The session for a read; reads need no lock (they see acknowledged events only)."""
        self._check_open()
        return self.session

    async def append_message(
        self, role: str, content: str, user: str, client_id: str
    ) -> tuple[Message, bool]:
        async with self._lock:
            self._check_writable()
            s = self.session
            if client_id in s.client_ids:
                return s.message_at(s.client_ids[client_id]), True
            ts = now_ms()
            entry = encode_message(role, content, user, ts, client_id)
            result = await self._write([entry], client_id=client_id)
            if result.duplicate:
                return s.message_at(result.first_seq), True
            event = MessageAppended(
                result.first_seq, ts, Message(result.first_seq, role, content, user, ts, client_id)
            )
            s.apply(event)
            self._publish(event)
            return event.message, False

    async def update_state(
        self, patch: dict[str, Any], patch_json: str, expected_version: int | None
    ) -> tuple[int, int]:
        """Applies a merge patch; returns (version, seq)."""
        async with self._lock:
            self._check_writable()
            s = self.session
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
            ts = now_ms()
            version = s.version + 1
            result = await self._write(
                [encode_state(patch_json, version, ts)],
                expected_version=expected_version,
                version_increment=1,
            )
            event = StateChanged(result.first_seq, ts, patch_json, version)
            s.apply(event, new_state)
            s.state_size = size
            self._publish(event)
            return version, event.seq

    async def send_prompt(
        self, content: str, user: str, client_id: str
    ) -> tuple[Message, int, bool]:
        """Stores the user message and the answer's start in one script; returns
        (user message, answer seq, duplicate)."""
        async with self._lock:
            self._check_writable()
            s = self.session
            if client_id in s.client_ids:
                seq = s.client_ids[client_id]
                return s.message_at(seq), s.answer_of_prompt.get(seq, 0), True
            if len(s.open_answers) > self._limits.max_queued_prompts:
                raise TooBusy(
                    f"{len(s.open_answers)} answers are waiting in this session; retry later"
                )
            ts = now_ms()
            prompt_seq = s.last_seq + 1
            entries = [
                encode_message("user", content, user, ts, client_id),
                encode_answer_start(prompt_seq, ts),
            ]
            result = await self._write(entries, client_id=client_id)
            if result.duplicate:
                seq = result.first_seq
                return s.message_at(seq), s.answer_of_prompt.get(seq, 0), True
            message = Message(prompt_seq, "user", content, user, ts, client_id)
            appended = MessageAppended(prompt_seq, ts, message)
            started = AnswerStarted(prompt_seq + 1, ts, prompt_seq)
            for event in (appended, started):
                s.apply(event)
                self._publish(event)
            self._start_worker()
            return message, started.seq, False

    def subscribe(self, after_seq: int | None, after_offset: int) -> tuple[Subscriber, list[Event]]:
        """Registers a subscriber and returns what it missed; nothing can fall in between."""
        self._check_open()
        subscriber = Subscriber(self._limits.subscriber_queue)
        replay = self.session.replay(after_seq, after_offset)
        self.session.subscribers.add(subscriber)
        return subscriber, replay

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.session.subscribers.discard(subscriber)
        self.last_used = time.monotonic()

    # -- answers -------------------------------------------------------------------------------

    async def end_orphaned_answers(self) -> None:
        """Ends answers a previous owner left open (it died mid-answer) as INTERRUPTED, keeping
        the text it had stored."""
        async with self._lock:
            s = self.session
            error = "the owner stopped before the answer finished"
            for answer in list(s.open_answers):
                ts = now_ms()
                content = "".join(answer.batches)
                result = await self._write(
                    [encode_answer_end(answer.seq, content, INTERRUPTED, error, ts)],
                    ended_answer=answer.seq,
                )
                seq = result.first_seq
                message = Message(seq, "assistant", content, "", ts, "", answer.seq, INTERRUPTED)
                s.apply(AnswerEnded(seq, ts, message, error))

    def resume_answers(self) -> None:
        """Continues answers a previous owner left open, from the batches it had stored."""
        if self.session.open_answers:
            self._start_worker()

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run_answers())
            self._worker.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "answer worker failed",
                exc_info=task.exception(),
                extra={"session_id": self.session.session_id},
            )

    async def _run_answers(self) -> None:
        try:
            while self.session.open_answers and not self.closed:
                await self._run_answer(self.session.open_answers[0])
        except SessionError as exc:
            # The answer stays open in Redis; the next owner continues it from its batches.
            logger.warning(
                "answer abandoned: %s", exc, extra={"session_id": self.session.session_id}
            )
        except Exception:
            # Never leave an answer open with nobody generating it: drop the owner, so the
            # next call activates the session again and resumes the answer.
            logger.exception("answer worker failed", extra={"session_id": self.session.session_id})
            self.close(SessionClosed("owner failed; resubscribe"))

    async def _run_answer(self, answer: OpenAnswer) -> None:
        s = self.session
        status, error = COMPLETED, ""
        for attempt in range(self._limits.answer_retries + 1):
            try:
                if await self._stream_answer(answer):
                    return  # the owner closed meanwhile; the next owner goes on
                break
            except AnswerFailed as exc:
                status, error = FAILED, str(exc)
                if not exc.retryable or attempt == self._limits.answer_retries:
                    logger.warning("answer failed: %s", exc, extra={"session_id": s.session_id})
                    break
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2**attempt) * random.uniform(0.5, 1)
                logger.info(
                    "model call failed, continuing the answer after %.2f s: %s",
                    delay,
                    exc,
                    extra={"session_id": s.session_id, "answer_seq": answer.seq},
                )
                with contextlib.suppress(TimeoutError):  # a cancel ends the wait early
                    await asyncio.wait_for(answer.cancel.wait(), delay)
                status, error = COMPLETED, ""
                if answer.cancel.is_set():
                    break
        if answer.cancel.is_set():
            status, error = CANCELLED, ""
        async with self._lock:
            if self.closed or answer.ended.is_set():
                return
            self._check_open()
            await self._end_answer(answer, status, error)

    async def _stream_answer(self, answer: OpenAnswer) -> bool:
        """One model call for the answer, continuing from its stored text; stores and sends
        each batch. True when the owner closed meanwhile. Raises AnswerFailed."""
        s = self.session
        turns = [
            (m.role, m.content)
            for m in s.context_for(answer.prompt_seq, self._limits.context_messages)
        ]
        prefix = "".join(answer.batches)
        if prefix:  # part of this answer is stored (earlier call or owner): the model continues
            turns.append(("assistant", prefix))
            logger.info(
                "answer resumed",
                extra={
                    "session_id": s.session_id,
                    "answer_seq": answer.seq,
                    "offset": len(answer.batches),
                },
            )
        stream = batches(
            self._ai.generate(turns, f"{s.session_id}:{answer.seq}", answer.usage),
            self._limits.answer_batch_chunks,
        )
        async with contextlib.aclosing(stream):
            while True:
                text = await self._next_or_cancelled(stream, answer)
                if text is None:
                    return False
                if self.closed:
                    return True
                if text:
                    await self._store_batch(answer, text)

    @staticmethod
    async def _next_or_cancelled(stream: AsyncIterator[str], answer: OpenAnswer) -> str | None:
        """The next batch, or None at the end of the answer or when it is cancelled (closing
        the stream then aborts the model call)."""
        if answer.cancel.is_set():
            return None
        following = asyncio.ensure_future(anext(stream, None))
        cancelled = asyncio.ensure_future(answer.cancel.wait())
        await asyncio.wait({following, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        cancelled.cancel()
        if not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
            return None
        return following.result()

    async def cancel_answer(self, answer_seq: int) -> tuple[int, bool]:
        """Cancels an open answer (0: the streaming one); returns once its end is stored."""
        self._check_writable()
        s = self.session
        answer = next((a for a in s.open_answers if answer_seq in (0, a.seq)), None)
        if answer is None:
            if answer_seq and any(
                isinstance(e, AnswerEnded) and e.message.answer_seq == answer_seq
                for e in s.events[answer_seq:]
            ):
                return answer_seq, False
            raise InvalidArgument(
                "no answer is streaming" if not answer_seq else f"no answer at seq {answer_seq}"
            )
        answer.cancel.set()
        if answer is not s.open_answers[0]:  # queued: nobody streams it, end it here
            async with self._lock:
                if not answer.ended.is_set():
                    await self._end_answer(answer, CANCELLED, "")
        await answer.ended.wait()
        return answer.seq, True

    async def _end_answer(self, answer: OpenAnswer, status: str, error: str) -> None:
        """Stores the answer's end with the text stored so far and tells subscribers. The
        caller holds the lock."""
        s = self.session
        ts = now_ms()
        content = "".join(answer.batches)
        usage = (answer.usage[0], answer.usage[1])
        result = await self._write(
            [encode_answer_end(answer.seq, content, status, error, ts, usage)],
            ended_answer=answer.seq,
        )
        message = Message(
            result.first_seq, "assistant", content, "", ts, "", answer.seq, status, *usage
        )
        event = AnswerEnded(result.first_seq, ts, message, error)
        s.apply(event)
        self._publish(event)

    async def _store_batch(self, answer: OpenAnswer, text: str) -> None:
        """Stores the next batch of the streaming answer, then sends it: no client ever sees
        text a crash could erase."""
        s = self.session
        try:
            await self._store.append_batch(
                s.session_id, s.epoch, answer.seq, len(answer.batches), text
            )
        except (StoreUnavailable, Fenced) as exc:
            self.close(SessionClosed(f"owner lost the session: {exc}"))
            raise
        if not self.closed:
            self._publish(s.add_delta(text))
