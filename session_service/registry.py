"""Sessions live on this pod: activated on first use, passivated when idle.

Contract:
- At most one activation per session id runs at a time; concurrent callers share it.
- Activation takes ownership in Redis (the epoch goes up, fencing any earlier owner), loads the
  whole log, and ends answers a dead owner left open before serving any call.
- A session is idle when nothing is attached (no subscriber, no answer, no write) and it has not
  been used for `idle_ms`; it is then passivated and reloads from Redis on the next call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from session_service.actor import AnswerSource, SessionActor, now_ms
from session_service.errors import SessionClosed, SessionError
from session_service.limits import Limits
from session_service.session import Session
from session_service.store import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry:
    """The actors of this pod, keyed by session id."""

    def __init__(self, store: Store, ai: AnswerSource, limits: Limits, idle_ms: int) -> None:
        self._store = store
        self._ai = ai
        self._limits = limits
        self._idle_s = idle_ms / 1000
        self._actors: dict[str, SessionActor] = {}
        self._activating: dict[str, asyncio.Task[SessionActor]] = {}

    def __len__(self) -> int:
        return len(self._actors)

    async def get(self, session_id: str) -> SessionActor:
        actor = self._actors.get(session_id)
        if actor is not None and not actor.closed:
            return actor
        task = self._activating.get(session_id)
        if task is None:
            task = asyncio.create_task(self._activate(session_id))
            self._activating[session_id] = task
            task.add_done_callback(lambda _: self._activating.pop(session_id, None))
        return await asyncio.shield(task)

    async def call(self, session_id: str, fn: Callable[[SessionActor], Awaitable[T]]) -> T:
        """Runs fn on the session's actor, once more on a fresh one if the first closed."""
        try:
            return await fn(await self.get(session_id))
        except SessionClosed:
            return await fn(await self.get(session_id))

    async def _activate(self, session_id: str) -> SessionActor:
        loaded = await self._store.activate(session_id, now_ms())
        session = Session.load(
            session_id, loaded.epoch, loaded.created_ms, now_ms(), loaded.entries
        )
        actor = SessionActor(session, self._store, self._ai, self._limits, self._forget)
        await actor.end_orphaned_answers()
        self._actors[session_id] = actor
        logger.info(
            "session activated",
            extra={"session_id": session_id, "epoch": loaded.epoch, "events": session.last_seq},
        )
        return actor

    def _forget(self, actor: SessionActor) -> None:
        sid = actor.session.session_id
        if self._actors.get(sid) is actor:
            del self._actors[sid]

    async def sweep_forever(self) -> None:
        """Passivates idle sessions; runs until cancelled."""
        interval = max(0.05, min(self._idle_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def sweep(self) -> int:
        cutoff = time.monotonic() - self._idle_s
        idle = [a for a in self._actors.values() if not a.busy and a.last_used < cutoff]
        for actor in idle:
            await actor.passivate()
            logger.info("session passivated", extra={"session_id": actor.session.session_id})
        return len(idle)

    async def close_all(self, reason: SessionError) -> None:
        for actor in list(self._actors.values()):
            actor.close(reason)
