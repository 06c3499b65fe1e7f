"""Sessions live on this pod: activated on first use, passivated when idle.

Contract:
- At most one activation per session id runs at a time; concurrent callers share it.
- Activation takes the session's lease and ownership in Redis (the epoch goes up, fencing any
  earlier owner), loads the session's snapshot and the log's tail (the whole log when there is
  no usable snapshot: log/snapshot.py), and ends answers a dead owner left open before serving
  any call. A lease held by a live pod raises NotOwner naming it. A lease left by a pod evicted
  as gone (its Redis connection closed: membership.py) is broken at once; one left by another
  pod that is no longer live (paused, partitioned) is waited out (at most the lease TTL). Either
  way the epoch goes up, so the old owner can never write again.
- When the ring moves a session elsewhere (a pod joined, or this one drains) the owner hands it
  off: writes get Moving (retry-safe), its answers finish (bounded), then the lease is released
  and subscribers are told to resubscribe, which reaches the new owner.
- A session is idle when nothing is attached (no subscriber, no answer, no write) and it has not
  been used for `idle_ms`; it is then passivated and reloads from Redis on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.ring import EmptyRing, HashRing
from session_service.actor.answering import AnswerSource
from session_service.actor.session_actor import AnswerHook, SessionActor
from session_service.errors import Moving, NotOwner, SessionError
from session_service.limits import Limits
from session_service.log import snapshot
from session_service.log.events import now_ms
from session_service.log.session import Session
from session_service.metrics import SessionMetrics
from session_service.store import thread_index
from session_service.store.sessions import Held, Loaded, Store

TAKEOVER_POLL_S = 0.1
"""How often activation retries a lease left behind by a dead pod."""

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry:
    """The actors of this pod, keyed by session id."""

    def __init__(
        self,
        store: Store,
        ai: AnswerSource,
        limits: Limits,
        *,
        idle_ms: int,
        pod_id: str,
        lease_ttl_ms: int,
        lease_margin_ms: int,
        handoff_timeout_ms: int,
        is_live: Callable[[str], bool],
        is_gone: Callable[[str], bool] = lambda _: False,
        metrics: SessionMetrics | None = None,
        after_answer: AnswerHook | None = None,
    ) -> None:
        self._store = store
        self.quotas = store.quotas
        self._ai = ai
        self._limits = limits
        self._idle_s = idle_ms / 1000
        self.pod_id = pod_id
        self._lease_ttl_ms = lease_ttl_ms
        self._lease_valid_s = (lease_ttl_ms - lease_margin_ms) / 1000
        self._handoff_timeout_s = handoff_timeout_ms / 1000
        self._is_live = is_live
        self._is_gone = is_gone
        self._actors: dict[str, SessionActor] = {}
        self._activating: dict[str, asyncio.Task[SessionActor]] = {}
        self._handoffs: set[asyncio.Task[None]] = set()
        self._metrics = metrics or SessionMetrics()
        self._after_answer = after_answer
        """Given to every actor: runs after each completed answer (auto title)."""
        self._metrics.watch(lambda: len(self._actors), self._subscribers, self._deepest_queue)
        self._ring: HashRing | None = None
        """The ring as of the last membership change; None until the first one."""
        self.activations = 0

    # Gauges read these from the metrics server's thread: each copies the loop's containers
    # with one C-level call (atomic under the GIL) before iterating the copy.

    def _subscribers(self) -> int:
        return sum(len(a.session.subscribers) for a in list(self._actors.values()))

    def _deepest_queue(self) -> int:
        actors = list(self._actors.values())
        return max((s.pending for a in actors for s in list(a.session.subscribers)), default=0)

    def __len__(self) -> int:
        return len(self._actors)

    def actors(self) -> list[SessionActor]:
        return list(self._actors.values())

    def local(self, session_id: str) -> SessionActor | None:
        """The open actor of a session on this pod, if any."""
        actor = self._actors.get(session_id)
        return actor if actor is not None and not actor.closed else None

    async def known(self, session_id: str) -> bool:
        """Whether the session is held here or exists in Redis: a read of a session that never
        existed is answered without activating it (activation stores its epoch for good)."""
        return self.local(session_id) is not None or await self._store.exists(session_id)

    async def get(self, session_id: str) -> SessionActor:
        actor = self._actors.get(session_id)
        if actor is not None and not actor.closed:
            return actor
        task = self._activating.get(session_id)
        if task is None:
            task = asyncio.create_task(self._activate(session_id))
            self._activating[session_id] = task
            task.add_done_callback(lambda t: self._activated(session_id, t))
        return await asyncio.shield(task)

    def _activated(self, session_id: str, task: asyncio.Task[SessionActor]) -> None:
        self._activating.pop(session_id, None)
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have stopped waiting (cancelled)

    async def call(self, session_id: str, fn: Callable[[SessionActor], Awaitable[T]]) -> T:
        """Runs fn on the session's actor here, activating it if needed. Raises SessionClosed
        when the actor closed meanwhile: the caller routes again, because the session may have
        moved to another pod."""
        return await fn(await self.get(session_id))

    async def until_moved(self, session_id: str) -> bool:
        """Waits (up to the hand-off timeout) while the session is handed off from this pod;
        False at once when it is not being handed off here."""
        actor = self.local(session_id)
        if actor is None or not actor.moving:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(actor.ended.wait(), self._handoff_timeout_s + 1.0)
        return True

    async def _activate(self, session_id: str) -> SessionActor:
        deadline = time.monotonic() + self._lease_ttl_ms / 1000 + 1.0
        waited_out = False
        breaks = ""
        while True:
            sent = time.monotonic()
            loaded = await self._store.activate(
                session_id, self.pod_id, self._lease_ttl_ms, now_ms(), breaks=breaks
            )
            if not isinstance(loaded, Held):
                break
            if self._is_live(loaded.holder):
                raise NotOwner(f"pod {loaded.holder} owns session {session_id}", loaded.holder)
            if self._is_gone(loaded.holder) and loaded.value != breaks:
                breaks, waited_out = loaded.value, True
                continue  # its process is gone: take the lease now, at a new epoch
            if time.monotonic() > deadline:
                raise Moving(f"session {session_id} is being taken over; retry")
            waited_out = True
            await asyncio.sleep(TAKEOVER_POLL_S)  # the dead pod's lease runs out within its TTL
        session = await self._image(session_id, loaded)
        actor = SessionActor(
            session,
            self._store,
            self._ai,
            self._limits,
            self._forget,
            self.pod_id,
            self._metrics,
            self._after_answer,
        )
        actor.lease_deadline = sent + self._lease_valid_s
        repair = thread_index.repair_for(session)
        if repair is not None:
            await self._store.follow_up(session_id, repair)
        for answer in session.open_answers:  # a previous owner died mid-answer
            answer.batches = await self._store.load_batches(session_id, answer.seq)
        if self._limits.continue_answers:
            actor.answers.resume()
        else:
            await actor.answers.end_orphaned()
        self._actors[session_id] = actor
        self.activations += 1
        self._metrics.activations.inc()
        if waited_out:
            self._metrics.takeovers.inc()
        if self._ring is not None:  # the ring may have moved on while we activated
            self.rebalance(self._ring)
        logger.info(
            "session activated",
            extra={
                "session_id": session_id,
                "epoch": loaded.epoch,
                "events": session.last_seq,
                "loaded": len(session.events),
                "pod_id": self.pod_id,
            },
        )
        return actor

    async def _image(self, session_id: str, loaded: Loaded) -> Session:
        """The session as activation read it: from its snapshot and the log's tail (a windowed
        image), else from the whole log. A snapshot that cannot be used is deleted and the
        whole log read instead."""
        if loaded.snapshot:
            try:
                return snapshot.restore(
                    session_id,
                    loaded.epoch,
                    loaded.created_ms,
                    now_ms(),
                    loaded.snapshot,
                    loaded.base,
                    loaded.entries,
                )
            except ValueError as exc:
                logger.error("snapshot unusable: %s", exc, extra={"session_id": session_id})
                with contextlib.suppress(SessionError):
                    await self._store.save_snapshot(session_id, loaded.epoch, 0, 0, b"")
        older = (
            await self._store.log.load_entries(session_id, 1, loaded.base) if loaded.base else []
        )
        entries = older + loaded.entries
        return Session.load(session_id, loaded.epoch, loaded.created_ms, now_ms(), entries)

    def _forget(self, actor: SessionActor) -> None:
        sid = actor.session.session_id
        if self._actors.get(sid) is actor:
            del self._actors[sid]
            self._metrics.evictions.inc()

    async def sweep_forever(self) -> None:
        """Passivates idle sessions; runs until cancelled."""
        interval = max(0.05, min(self._idle_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def sweep(self) -> int:
        cutoff = time.monotonic() - self._idle_s
        passivated = 0
        for actor in list(self._actors.values()):
            # Checked right before each one: earlier passivations awaited Redis meanwhile.
            if actor.closed or actor.busy or actor.last_used >= cutoff:
                continue
            await actor.passivate()
            passivated += 1
            logger.info("session passivated", extra={"session_id": actor.session.session_id})
        return passivated

    def rebalance(self, ring: HashRing) -> None:
        """Starts handing off every session the ring now places on another pod."""
        self._ring = ring
        for actor in list(self._actors.values()):
            try:
                owner = ring.owner(actor.session.session_id)
            except EmptyRing:
                owner = ""
            if owner != self.pod_id and not actor.moving:
                self.hand_off(actor)

    def hand_off(self, actor: SessionActor) -> asyncio.Task[None]:
        """Starts handing one session off this pod; the task is kept until it ends, so a caller
        that stops waiting (a cancelled RPC) never leaves the session half moved."""
        task = asyncio.create_task(actor.hand_off(self._handoff_timeout_s))
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)
        return task

    async def handoffs_done(self) -> None:
        """Waits for every hand-off in progress."""
        while self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)

    async def close_all(self, reason: SessionError) -> None:
        """Closes every owner and releases its lease, so the next owner need not wait it out."""
        await asyncio.gather(
            *(actor.passivate(reason) for actor in list(self._actors.values())),
            return_exceptions=True,
        )
