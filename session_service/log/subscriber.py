"""One subscriber's bounded buffer of live events; a subscriber that falls behind is cut off.

Events pushed before `close` are still delivered, then `next()` raises the close reason, so a
subscriber's cursor is always consistent with what it received and it can resume from there.
"""

from __future__ import annotations

import asyncio
from collections import deque

from session_service.errors import SessionError, SlowSubscriber
from session_service.log.events import Event


class Subscriber:
    """Filled by the owner (`push`, never blocks), drained by one stream writer (`next`)."""

    def __init__(self, max_pending: int, user: str = "") -> None:
        self.user = user
        """The authenticated user behind the stream ("" when anonymous): presence, removal."""
        self._items: deque[Event] = deque()
        self._max_pending = max_pending
        self._wakeup = asyncio.Event()
        self._error: SessionError | None = None

    @property
    def closed(self) -> bool:
        return self._error is not None

    @property
    def pending(self) -> int:
        """Events pushed and not yet taken."""
        return len(self._items)

    def push(self, event: Event) -> None:
        if self._error is not None:
            return
        if len(self._items) >= self._max_pending:
            self.close(
                SlowSubscriber(
                    f"subscriber fell {self._max_pending} events behind; resubscribe from "
                    "your cursor"
                )
            )
            return
        self._items.append(event)
        self._wakeup.set()

    def close(self, error: SessionError) -> None:
        if self._error is None:
            self._error = error
            self._wakeup.set()

    async def next(self) -> Event:
        """The next event; raises the close reason once everything before it was delivered."""
        while not self._items:
            if self._error is not None:
                raise self._error
            await self._wakeup.wait()
            self._wakeup.clear()
        return self._items.popleft()
