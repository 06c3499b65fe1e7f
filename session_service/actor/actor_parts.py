"""What the halves of SessionActor (room_ops.py, thread_ops.py, feedback_ops.py) use from the
actor (actor.py): its session, its write lock and its store-then-publish write path."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from session_service.log.events import Event
    from session_service.log.session import Session
    from session_service.store.sessions import Appended


class ActorParts:
    session: Session
    _lock: asyncio.Lock

    async def _write(self, entries: list[bytes], *, version_increment: int = 0) -> Appended:
        """Stores entries with one fenced script (the lock is held); `version_increment`: the
        state changes among them."""
        raise NotImplementedError

    def _check_writable(self) -> None:
        raise NotImplementedError

    def _publish(self, event: Event) -> None:
        raise NotImplementedError
