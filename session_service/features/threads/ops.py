"""Renaming, deleting and restoring a thread: log writes of the owner actor they take
(actor/session_actor.py). The contract is docs/threads.md; the index changes ride on the write
(store/thread_index.py)."""

from __future__ import annotations

from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import FailedPrecondition, NotFound, TooBusy
from session_service.log import validate
from session_service.log.events import (
    ThreadChanged,
    encode_delete,
    encode_rename,
    encode_restore,
    now_ms,
)


class ThreadOps:
    """The thread operations of one actor."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def _store_thread(self, entry: bytes) -> ThreadChanged:
        [event] = await self._actor.store([entry])
        assert isinstance(event, ThreadChanged)
        return event

    async def rename(self, caller: Caller, title: str) -> int:
        """Owners and members rename; returns the event's seq."""
        title = validate.title(title)
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            access.require(actor.session, caller, access.WRITE)
            if access.claims(actor.session, caller):  # nothing to rename nobody owns
                raise NotFound(access.NOT_FOUND)
            event = await self._store_thread(encode_rename(title, caller.user, now_ms()))
            return event.seq

    async def delete(self, caller: Caller) -> tuple[int, int]:
        """Owner only: cancels open answers, then stores the delete; returns (seq, purge ms).
        Everyone's open streams end NOT_FOUND."""
        actor = self._actor
        s = actor.session
        access.require(s, caller, access.MANAGE)
        if access.claims(s, caller):
            raise NotFound(access.NOT_FOUND)
        while s.open_answers:
            await actor.answers.cancel(s.open_answers[0].seq, caller)
        async with actor.lock:
            actor.check_writable()
            access.require(s, caller, access.MANAGE)
            if s.open_answers:
                raise TooBusy("a prompt started an answer meanwhile; retry the delete")
            ts = now_ms()
            purge_ms = ts + actor.limits.deleted_retention_s * 1000
            event = await self._store_thread(encode_delete(caller.user, ts, purge_ms))
        # Nobody can use it now: leave memory and let the lease go (the purge waits for that).
        await actor.passivate(NotFound(access.NOT_FOUND))
        return event.seq, purge_ms

    async def restore(self, caller: Caller) -> int:
        """Owner only, while deleted (a purged thread is gone: NOT_FOUND)."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            if not s.deleted_ms:
                access.require(s, caller, access.MANAGE)  # (NOT_FOUND without a role)
                raise FailedPrecondition("the thread is not deleted")
            access.require(s, caller, access.RESTORE)
            event = await self._store_thread(encode_restore(caller.user, now_ms()))
            return event.seq
