"""The live owner of one session on this pod: serialises writes, persists, then broadcasts.

Contract:
- Writes to one session run one at a time (`lock`); different sessions run concurrently.
- An event reaches memory and subscribers only after Redis acknowledged it, in seq order.
- Answers run one at a time in prompt order (`answers`, answering.py): each delta batch is
  stored, then sent (one Redis call per batch, never per token); the assistant message is stored
  before AnswerEnded is sent.
- When a write's outcome is unknown (Redis error) or the owner was fenced, the actor closes:
  subscribers get UNAVAILABLE and resume from their cursor on a fresh activation, which reloads
  the truth from Redis.

What a write needs is public here, and each operation is a class that takes the actor
(actor/messages.py, features/<name>/ops.py): hold `lock`, `check_writable()`, check access
(`read`, `authorize_write`, `claim_unowned`), then `store(...)` (or `write` + `publish`). The
actor knows no feature: `after_answer` (wired by the registry's creator) runs after an answer
completed, which is how threads get their auto title.

Snapshots (log/snapshot.py): the image may be windowed (restored from a snapshot: the events
before `session.base_seq` are not in memory). History pages and replays from an old cursor read
what they need of them from Redis and keep nothing (`messages_at`, `events_before_window`);
`whole()` reads them all once, for the calls that need the whole log in memory (exports,
branches, audit, feedback: rpc/methods.py `recent`). The owner stores a snapshot
whenever its log has grown EVERY_EVENTS past the last one and on passivation; a failed or lost
snapshot write only makes the next activation read more of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from session_service.actor import access
from session_service.actor.access import ANONYMOUS, Caller
from session_service.actor.answering import Answering, AnswerSource
from session_service.errors import (
    Fenced,
    Moving,
    NotFound,
    SessionClosed,
    SessionError,
    StoreFull,
    StoreUnavailable,
    TooBusy,
)
from session_service.limits import Limits
from session_service.log import snapshot
from session_service.log.events import (
    AccessChanged,
    CaughtUp,
    Event,
    LogEvent,
    Message,
    MessageEvent,
    PresenceChanged,
    decode,
    encode_grant,
    now_ms,
)
from session_service.log.session import OpenAnswer, Session
from session_service.log.subscriber import Subscriber
from session_service.metrics import SessionMetrics
from session_service.store import footprint, thread_index
from session_service.store.sessions import Appended, Store

logger = logging.getLogger(__name__)

AnswerHook = Callable[["SessionActor", OpenAnswer], Awaitable[None]]
"""Runs after an answer completed, outside the lock (features/threads/auto_title.py)."""


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
        metrics: SessionMetrics | None = None,
        after_answer: AnswerHook | None = None,
    ) -> None:
        self.session = session
        self.limits = limits
        self._store = store
        self._on_close = on_close
        self.lock = asyncio.Lock()
        """Held by every write, from its checks until it is applied and published."""
        self._pod_id = pod_id
        self._metrics = metrics or SessionMetrics()
        self.closed = False
        self.ended = asyncio.Event()
        """Set when the actor closes (`closed`), for calls waiting out a hand-off."""
        self.moving = False
        """Set while handing the session to another pod: reads go on, writes get Moving."""
        self.lease_deadline = float("inf")
        """Monotonic time after which this pod must consider its lease gone."""
        self.last_used = time.monotonic()
        self._online: tuple[str, ...] = ()
        self._completing = asyncio.Lock()
        """Held while the older part of a windowed image is read (`whole`)."""
        self._snapshotting: asyncio.Task[None] | None = None
        completed = None if after_answer is None else self._completed_hook(after_answer)
        self.answers = Answering(self, store, ai, limits, self._metrics, completed)

    def _completed_hook(self, hook: AnswerHook) -> Callable[[OpenAnswer], Awaitable[None]]:
        async def completed(answer: OpenAnswer) -> None:
            await hook(self, answer)

        return completed

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while anything is attached: subscribers, answers, a write in flight."""
        s = self.session
        return bool(s.subscribers or s.open_answers or self.lock.locked())

    def close(self, reason: SessionError) -> None:
        """Drops the in-memory owner; subscribers get `reason` after what they already have."""
        if self.closed:
            return
        self.closed = True
        self.ended.set()
        for subscriber in list(self.session.subscribers):
            subscriber.close(reason)
        self.session.subscribers.clear()
        self.answers.stop()
        self._on_close(self)

    async def passivate(self, reason: SessionError | None = None) -> None:
        """Closes, then releases the lease and records the last access time; the next call
        activates the session again (here or wherever the ring says)."""
        self.close(reason or SessionClosed("session passivated; resubscribe"))
        s = self.session
        if s.last_seq > max(s.snapshot_seq, snapshot.WINDOW_EVENTS):
            await self._save_snapshot(*self._snapshot_now())
        with contextlib.suppress(SessionError):
            await self._store.release(s.session_id, self._pod_id, s.epoch, s.accessed_ms)

    async def hand_off(self, timeout_s: float) -> None:
        """Moves the session off this pod: no new writes, answers finish (up to timeout_s),
        the write in flight completes, then the lease is released for the new owner."""
        self.moving = True
        deadline = time.monotonic() + timeout_s
        while True:
            await self.answers.wait(max(0.0, deadline - time.monotonic()))
            async with self.lock:
                # A prompt whose write was in flight when the move began may have just started
                # an answer: let it finish too, unless time is up.
                if not self.answers.running or time.monotonic() >= deadline:
                    await self.passivate(Moving("session moved to another pod; resubscribe"))
                    break
        logger.info(
            "session handed off",
            extra={"session_id": self.session.session_id, "pod_id": self._pod_id},
        )

    # -- checks ----------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raises SessionClosed once closed (or once the lease may have run out)."""
        if not self.closed and time.monotonic() > self.lease_deadline:
            self.close(Moving("this pod's lease on the session may have expired; retry"))
        if self.closed:
            raise SessionClosed("session owner closed; retry")
        self.last_used = time.monotonic()
        self.session.accessed_ms = now_ms()

    def check_writable(self) -> None:
        """`check_open`, and Moving while the session is handed off."""
        self.check_open()
        if self.moving:
            raise Moving("session is moving to another pod; retry")

    def check_queue(self) -> None:
        """TooBusy when too many answers wait in this session for another prompt."""
        waiting = len(self.session.open_answers)
        if waiting > self.limits.max_queued_prompts:
            raise TooBusy(f"{waiting} answers are waiting in this session; retry later")

    def read(self, caller: Caller = ANONYMOUS, need: str = access.READ) -> Session:
        """The session for a read; reads need no lock (they see acknowledged events only)."""
        self.check_open()
        access.require(self.session, caller, need)
        return self.session

    def authorize_write(self, caller: Caller) -> str:
        """Checks a write by `caller` (the lock is held); returns the user to store with it."""
        access.require(self.session, caller, access.WRITE)
        return caller.user if caller.enforced else ""

    async def claim_unowned(self, caller: Caller) -> None:
        """Makes `caller` the owner of an unowned session; called once a write has passed
        every check, right before it is stored, so a refused write claims nothing."""
        if access.claims(self.session, caller):
            await self.store_access(encode_grant(caller.user, access.OWNER, caller.user, now_ms()))

    async def known_attachment(self, sha: str, caller: Caller) -> tuple[int, str] | None:
        """(size, media type) of a file the caller uploaded (anyone's with AUTH_MODE=off)."""
        return await self._store.attachments.known(sha, caller.user if caller.enforced else None)

    async def stored_client_id(self, client_id: str) -> int:
        """The seq of the write stored with this client message id (0: none)."""
        return await self._store.log.client_seq(self.session.session_id, client_id)

    # -- the write path ----------------------------------------------------------------------

    async def write(
        self,
        entries: list[bytes],
        *,
        client_id: str = "",
        expected_version: int | None = None,
        version_increment: int = 0,
        ended_answer: int = 0,
    ) -> Appended:
        """Stores entries with one fenced script call; the caller holds the lock and applies
        and publishes them after. `version_increment`: the state changes among them."""
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
                log_limit=footprint.log_limit(entries, self.limits),
                claim=footprint.claim_of(s.owner, entries, self.limits),
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

    def publish(self, event: Event) -> None:
        """Sends an event to every subscriber (after it was applied); starts storing a
        snapshot when the log has grown enough since the last one."""
        s = self.session
        dropped = s.broadcast(event)
        if dropped:
            self._metrics.dropped_subscribers.inc(dropped)
        due = s.last_seq - s.snapshot_seq >= snapshot.EVERY_EVENTS
        if due and self._snapshotting is None and not self.closed:
            self._snapshotting = asyncio.create_task(self._save_snapshot(*self._snapshot_now()))

    def _snapshot_now(self) -> tuple[int, int, bytes, dict[str, int] | None]:
        """(seq, window start, body, client ids) of the image's snapshot now; the next one is
        due EVERY_EVENTS later whether this one is stored or not (no retry per event). The
        first snapshot of a log (from a whole image) records every client id it holds."""
        s = self.session
        client_ids = dict(s.client_ids) if not s.snapshot_seq and s.whole else None
        s.snapshot_seq = s.last_seq
        return s.last_seq, snapshot.window_start(s), snapshot.encode(s), client_ids

    async def _save_snapshot(
        self, seq: int, start: int, body: bytes, client_ids: dict[str, int] | None = None
    ) -> None:
        s = self.session
        try:
            await self._store.save_snapshot(s.session_id, s.epoch, seq, start, body, client_ids)
        except SessionError as exc:  # fenced, Redis down or full: the log is still all there
            logger.info("snapshot not stored: %s", exc, extra={"session_id": s.session_id})
        finally:
            self._snapshotting = None

    async def messages_at(self, seqs: list[int]) -> list[Message]:
        """The messages at `seqs` (message seqs the tree knows): those before a windowed
        image's window are read from Redis (one round trip) and not kept."""
        s = self.session
        older = [seq for seq in seqs if seq <= s.base_seq]
        read: dict[int, Message] = {}
        for seq, raw in zip(
            older, await self._store.log.entries_at(s.session_id, older), strict=True
        ):
            event = decode(seq, raw)
            if not isinstance(event, MessageEvent):
                raise StoreUnavailable(f"session {s.session_id}: seq {seq} is no message")
            read[seq] = event.message
        return [read[seq] if seq in read else s.message_at(seq) for seq in seqs]

    async def events_before_window(self, after_seq: int | None) -> list[LogEvent] | None:
        """The events after `after_seq` through a windowed image's window start, read from
        Redis and not kept (None: none are needed; `subscribe` takes them)."""
        s = self.session
        if after_seq is None or after_seq >= s.base_seq:
            return None
        base = s.base_seq
        raw = await self._store.log.load_entries(s.session_id, after_seq + 1, base)
        return [decode(after_seq + 1 + i, entry) for i, entry in enumerate(raw)]

    async def whole(self) -> Session:
        """The session with every event in memory: a windowed image reads the events before
        its window from Redis first (once). A snapshot that does not match the log closes the
        owner (the next activation reads the whole log)."""
        s = self.session
        async with self._completing:
            if s.whole:
                return s
            older = await self._store.log.load_entries(s.session_id, 1, s.base_seq)
            try:
                s.complete(older)
                logger.info(
                    "session history loaded",
                    extra={"session_id": s.session_id, "events": len(older)},
                )
            except ValueError as exc:
                logger.error("%s", exc, extra={"session_id": s.session_id})
                self.close(SessionClosed("session reloading; retry"))
                await self._save_snapshot(0, 0, b"")  # deleted: the next activation reads all
                raise StoreUnavailable("session reloading; retry") from exc
        return s

    async def store(self, entries: list[bytes], *, version_increment: int = 0) -> list[LogEvent]:
        """Stores entries with one write (the lock is held), then applies and publishes each
        in order; returns their events."""
        result = await self.write(entries, version_increment=version_increment)
        stored = []
        for index, raw in enumerate(entries):
            event = decode(result.first_seq + index, raw)
            self.session.apply(event)
            self.publish(event)
            stored.append(event)
        return stored

    async def store_access(self, entry: bytes) -> AccessChanged:
        """Stores one access event (the lock is held); a user who lost their role has their
        streams closed (NOT_FOUND) at once."""
        [event] = await self.store([entry])
        assert isinstance(event, AccessChanged)
        if event.user and not event.role:
            for subscriber in [x for x in self.session.subscribers if x.user == event.user]:
                subscriber.close(NotFound(access.NOT_FOUND))
                self.session.subscribers.discard(subscriber)
            self._presence_changed()
        return event

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(
        self,
        after_seq: int | None,
        after_offset: int,
        caller: Caller = ANONYMOUS,
        older: list[LogEvent] | None = None,
    ) -> tuple[Subscriber, list[Event]]:
        """Registers a subscriber and returns what it missed; nothing can fall in between.
        A cursor before a windowed image's window needs `older` (`events_before_window`)."""
        self.read(caller)
        subscriber = Subscriber(self.limits.subscriber_queue, caller.user)
        replay = self.session.replay(after_seq, after_offset, older)
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

    def _presence_changed(self) -> None:
        """Tells subscribers who is connected now, when that changed."""
        s = self.session
        online = s.online()
        if online == self._online:
            return
        self._online = online
        offset = len(s.open_answers[0].batches) if s.open_answers else 0
        self.publish(PresenceChanged(s.last_seq, offset, online))
