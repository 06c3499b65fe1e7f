"""How a session's owner runs its AI answers: one at a time, in prompt order, each batch stored
before it is sent, model failures retried by continuing from the stored text, cancel stored
before it is acknowledged. A component the actor owns (`SessionActor.answers`); it writes through
the actor's lock and write path (`AnswerOwner`).

Going on from stored text (a new owner after a crash, or a retry after a failed model call): the
text is sent as a trailing assistant turn; if the AI service says its model answers afresh
instead of continuing it (ANSWER_CONTINUE=restart), answer_restart.py replaces the answer before
its first new batch is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from session_service.actor import access
from session_service.actor.access import ANONYMOUS, Caller
from session_service.actor.answer_batches import batches
from session_service.actor.answer_restart import restart
from session_service.actor.prompt_window import window_of
from session_service.errors import (
    AnswerFailed,
    Fenced,
    InvalidArgument,
    NotFound,
    SessionClosed,
    SessionError,
    StoreUnavailable,
)
from session_service.log.events import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    AnswerEnded,
    AnswerStarted,
    Event,
    Message,
    MessageAppended,
    encode_answer_end,
    now_ms,
)
from session_service.log.session import OpenAnswer

if TYPE_CHECKING:
    from session_service.limits import Limits
    from session_service.log.session import Session
    from session_service.metrics import SessionMetrics
    from session_service.store.sessions import Appended, Store

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.25
RETRY_MAX_S = 2.0


class AnswerSource(Protocol):
    """Streams an answer as (text, model chunk count) items; raises AnswerFailed. A trailing
    assistant turn is a partial answer for the model to go on from: `restarted` is set before
    any text when the model answers afresh instead of continuing it. The model's token counts
    are added to `usage` ([prompt, completion, regenerated]) when it reports them."""

    def generate(
        self,
        turns: list[tuple[str, str]],
        request_id: str,
        usage: list[int],
        max_tokens: int = 0,
        restarted: asyncio.Event | None = None,
    ) -> AsyncIterator[tuple[str, int]]: ...


class AnswerOwner(Protocol):
    """What answering uses of its actor (session_actor.py, the one implementation; named here
    so that this module need not import the actor that owns it)."""

    session: Session
    closed: bool
    lock: asyncio.Lock

    async def write(
        self,
        entries: list[bytes],
        *,
        client_id: str = "",
        expected_version: int | None = None,
        version_increment: int = 0,
        ended_answer: int = 0,
    ) -> Appended: ...

    def publish(self, event: Event) -> None: ...

    def close(self, reason: SessionError) -> None: ...

    def check_open(self) -> None: ...

    def check_writable(self) -> None: ...

    async def messages_at(self, seqs: list[int]) -> list[Message]: ...

    async def whole(self) -> Session: ...


class Answering:
    """The answers of one session's actor: its worker task runs the open answers in order;
    `completed` (the actor's after-answer hook) runs after each completed one."""

    def __init__(
        self,
        owner: AnswerOwner,
        store: Store,
        ai: AnswerSource,
        limits: Limits,
        metrics: SessionMetrics,
        completed: Callable[[OpenAnswer], Awaitable[None]] | None = None,
    ) -> None:
        self._owner = owner
        self._store = store
        self._ai = ai
        self._limits = limits
        self._metrics = metrics
        self._completed = completed
        self._worker: asyncio.Task[None] | None = None

    @property
    def session(self) -> Session:
        return self._owner.session

    @property
    def running(self) -> bool:
        """True while the worker runs answers."""
        return self._worker is not None and not self._worker.done()

    async def wait(self, timeout_s: float) -> None:
        """Waits up to timeout_s for the running worker to finish its answers."""
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=timeout_s)

    def stop(self) -> None:
        """Cancels the worker (the actor closed); unless that is the worker itself closing it."""
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()

    async def end_orphaned(self) -> None:
        """Ends answers a previous owner left open (it died mid-answer) as INTERRUPTED, keeping
        the text it had stored."""
        async with self._owner.lock:
            s = self.session
            error = "the owner stopped before the answer finished"
            for answer in list(s.open_answers):
                ts = now_ms()
                content = "".join(answer.batches)
                result = await self._owner.write(
                    [encode_answer_end(answer.seq, content, INTERRUPTED, error, ts)],
                    ended_answer=answer.seq,
                )
                seq = result.first_seq
                message = Message(seq, "assistant", content, "", ts, "", answer.seq, INTERRUPTED)
                s.apply(AnswerEnded(seq, ts, message, error))

    def resume(self) -> None:
        """Continues answers a previous owner left open, from the batches it had stored."""
        if self.session.open_answers:
            self.start()

    def start(self) -> None:
        """Runs the open answers unless the worker already does (after an AnswerStarted)."""
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
            while self.session.open_answers and not self._owner.closed:
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
            self._owner.close(SessionClosed("owner failed; resubscribe"))

    async def _run_answer(self, answer: OpenAnswer) -> None:
        s = self.session
        started = time.monotonic()
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
        async with self._owner.lock:
            if self._owner.closed or answer.ended.is_set():
                return
            self._owner.check_open()
            await self._end_answer(answer, status, error)
        logger.info(
            "answer finished",
            extra={
                "session_id": s.session_id,
                "answer_seq": answer.seq,
                "status": status,
                "ttft_ms": round(answer.first_batch_s * 1000, 1),
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "batches": len(answer.batches),
                "completion_tokens": answer.usage[1],
                "regenerated_tokens": answer.usage[2],
                "max_gap_ms": round(answer.max_gap_s * 1000, 1),
                "model_calls": answer.model_calls,
                "resumes": answer.model_calls - 1 if answer.model_calls else 0,
            },
        )
        self._observe(answer, status)
        await self._add_user_usage(answer)
        if status == COMPLETED and self._completed is not None:
            await self._completed(answer)

    def _observe(self, answer: OpenAnswer, status: str) -> None:
        m = self._metrics
        m.answers.labels(status).inc()
        if answer.first_batch_s:
            m.answer_first_batch_seconds.observe(answer.first_batch_s)
        if answer.max_gap_s:
            m.answer_max_gap_seconds.observe(answer.max_gap_s)
        m.completion_tokens.inc(answer.usage[1])
        m.regenerated_tokens.inc(answer.usage[2])
        m.answer_resumes.inc(max(0, answer.model_calls - 1))

    async def _stream_answer(self, answer: OpenAnswer) -> bool:
        """One model call for the answer, continuing from its stored text; stores and sends
        each batch. True when the owner closed meanwhile. Raises AnswerFailed."""
        s = self.session
        turns = [(m.role, m.content) for m in await self._prompt_window(answer.prompt_seq)]
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
        answer.model_calls += 1
        called = time.monotonic()
        restarted = asyncio.Event()
        stream = batches(
            self._ai.generate(
                turns, f"{s.session_id}:{answer.seq}", answer.usage, restarted=restarted
            ),
            self._limits.answer_batch_chunks,
            self._limits.answer_batch_ms / 1000,
        )
        async with contextlib.aclosing(stream):
            while True:
                text = await self._next_or_cancelled(stream, answer)
                if text is None:
                    if prefix and restarted.is_set() and not answer.cancel.is_set():
                        await self._restart(answer)  # the fresh answer is empty
                    return False
                if self._owner.closed:
                    return True
                if text:
                    if prefix and restarted.is_set():  # the first batch of a fresh answer
                        prefix = ""
                        await self._restart(answer)
                    await self._store_batch(answer, text)
                    sent_at = time.monotonic()
                    if not answer.first_batch_s:
                        answer.first_batch_s = sent_at - called
                    if answer.last_batch_at:
                        answer.max_gap_s = max(answer.max_gap_s, sent_at - answer.last_batch_at)
                    answer.last_batch_at = sent_at

    async def _prompt_window(self, prompt_seq: int) -> list[Message]:
        """The trimmed history the model is shown (prompt_window.py `window_of`: older
        messages of a windowed image are read from Redis as far as the budget reaches)."""
        try:
            return await window_of(
                self.session, prompt_seq, self._limits.context_tokens, self._owner.messages_at
            )
        except StoreUnavailable as exc:  # never an open answer nobody generates: hand it on
            self._owner.close(SessionClosed(f"owner lost the session: {exc}"))
            raise

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

    async def cancel(self, answer_seq: int, caller: Caller = ANONYMOUS) -> tuple[int, bool]:
        """Cancels an open answer (0: the streaming one); returns once its end is stored.
        The caller is stored with the end, for the audit log."""
        self._owner.check_writable()
        access.require(self.session, caller, access.WRITE)
        if access.claims(self.session, caller):  # nothing to cancel in a session nobody owns
            raise NotFound(access.NOT_FOUND)
        by = caller.user
        s = self.session
        answer = next((a for a in s.open_answers if answer_seq in (0, a.seq)), None)
        if answer is None:
            if answer_seq and answer_seq < s.base_seq:
                await self._owner.whole()
            if answer_seq and any(
                isinstance(e, AnswerEnded) and e.message.answer_seq == answer_seq
                for e in s.events_after(answer_seq)
            ):
                return answer_seq, False
            raise InvalidArgument(
                "no answer is streaming" if not answer_seq else f"no answer at seq {answer_seq}"
            )
        if not answer.cancel.is_set():
            answer.cancelled_by = by
        answer.cancel.set()
        if answer is not s.open_answers[0]:  # queued: nobody streams it, end it here
            async with self._owner.lock:
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
        usage = (answer.usage[0], answer.usage[1], answer.usage[2])
        by = answer.cancelled_by if status == CANCELLED else ""
        result = await self._owner.write(
            [encode_answer_end(answer.seq, content, status, error, ts, usage, by)],
            ended_answer=answer.seq,
        )
        message = Message(
            result.first_seq, "assistant", content, "", ts, "", answer.seq, status, *usage
        )
        event = AnswerEnded(result.first_seq, ts, message, error, by)
        s.apply(event)
        self._owner.publish(event)

    async def _restart(self, answer: OpenAnswer) -> None:
        await restart(self._owner, answer)
        self._metrics.answer_restarts.inc()

    async def _add_user_usage(self, answer: OpenAnswer) -> None:
        """Adds the answer's usage to its prompter's totals; best effort (usage_store.py)."""
        prompt = self.session.event_at(answer.prompt_seq)
        started = self.session.event_at(answer.seq)
        user = prompt.message.user if isinstance(prompt, MessageAppended) else ""
        if isinstance(started, AnswerStarted) and started.by:  # a regeneration: its requester
            user = started.by
        if not user or not any(answer.usage):
            return
        await self._store.quotas.settle(user, answer.usage[0] + answer.usage[1])
        try:
            await self._store.usage.add(user, (answer.usage[0], answer.usage[1], answer.usage[2]))
        except StoreUnavailable as exc:
            logger.warning(
                "user usage not counted: %s", exc, extra={"session_id": self.session.session_id}
            )

    async def _store_batch(self, answer: OpenAnswer, text: str) -> None:
        """Stores the next batch of the streaming answer, then sends it: no client ever sees
        text a crash could erase."""
        s = self.session
        try:
            await self._store.append_batch(
                s.session_id, s.epoch, answer.seq, len(answer.batches), text
            )
        except (StoreUnavailable, Fenced) as exc:
            self._owner.close(SessionClosed(f"owner lost the session: {exc}"))
            raise
        if not self._owner.closed:
            self._owner.publish(s.add_delta(text))
