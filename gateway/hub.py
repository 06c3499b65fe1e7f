"""One upstream Subscribe per thread, fanned out to every socket of that thread on this gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from aiohttp import WSCloseCode

from gateway.errors import GatewayError, UpstreamError
from gateway.frames import CaughtUp, Event, ThreadView, error_frame
from gateway.identity import upstream_metadata, use_metadata
from gateway.outbox import Outbox
from gateway.upstream import SessionClient

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.01
"""The first resubscribe comes at once (5-10 ms): failover waits in the pods (a dead owner's
successor serves the call once the owner is dropped; a moving session, once moved:
docs/failover.md), so only repeated failures back off, doubling up to MAX_BACKOFF_S."""
MAX_BACKOFF_S = 2.0


ACCESS_CODES = frozenset({"NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"})
"""Upstream answers that end a stream because the user has no access (closed with 1008)."""


class ThreadHub:
    """One thread's upstream stream, its ThreadView, and the outboxes of its sockets here.

    Frames reach every outbox in the order the view produced them. Joins and frames happen on the
    event loop between awaits, so a joining socket's snapshot and the live frames after it
    neither overlap nor leave a gap. `users` counts joined sockets and sockets waiting to join.
    """

    def __init__(
        self,
        thread_id: str,
        client: SessionClient,
        on_gone: Callable[[ThreadHub], None],
        user: str = "",
    ) -> None:
        self.thread_id = thread_id
        self.key = (thread_id, user)
        self.metadata = upstream_metadata()
        """What the stream carries when it (re)subscribes: the token of the newest socket, so
        one socket's token expiring does not end the stream for the user's others."""
        self.users = 0
        self._client = client
        self._on_gone = on_gone
        self._view = ThreadView()
        self._outboxes: set[Outbox] = set()
        self._ready = asyncio.Event()
        self._failure: GatewayError | None = None
        self._last_error: GatewayError | None = None
        """The latest failed subscribe attempt, while retrying."""
        self._resuming = False
        self._task: asyncio.Task[None] | None = None

    def start(self, tasks: asyncio.TaskGroup) -> None:
        self._task = tasks.create_task(self._run(), name=f"hub:{self.thread_id}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if not self._ready.is_set():
            self._failure = UpstreamError(
                "gateway is shutting down", status=503, code="UNAVAILABLE", retryable=True
            )
            self._ready.set()

    async def join(self, outbox: Outbox, timeout_s: float) -> None:
        """Waits for the first CaughtUp, then adds the outbox, primed with the open answer."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError as exc:
            if self._last_error is not None:  # retried until now: report why it kept failing
                raise self._last_error from exc
            raise UpstreamError(
                "session service did not answer the subscription in time",
                status=504,
                code="DEADLINE_EXCEEDED",
                retryable=True,
            ) from exc
        if self._failure is not None:
            raise self._failure
        outbox.offer_all(self._view.snapshot())
        self._outboxes.add(outbox)

    def leave(self, outbox: Outbox) -> None:
        self._outboxes.discard(outbox)

    async def _run(self) -> None:
        backoff = INITIAL_BACKOFF_S
        extra = {"session_id": self.thread_id}
        try:
            while True:
                failure: GatewayError = UpstreamError(
                    "subscription ended", status=503, code="UNAVAILABLE", retryable=True
                )
                try:
                    use_metadata(self.metadata)
                    events = self._client.subscribe(self.thread_id, self._view.cursor)
                    async with contextlib.aclosing(events):
                        async for event in events:
                            if self._deliver(event):
                                backoff = INITIAL_BACKOFF_S
                except GatewayError as exc:
                    failure = exc
                self._last_error = failure
                if not failure.retryable:  # before the first CaughtUp too: join() bounds the wait
                    self._fail(failure)
                    return
                delay = random.uniform(backoff / 2, backoff)
                cursor = self._view.cursor
                logger.warning(
                    "subscription failed; resubscribing",
                    extra={
                        **extra,
                        "code": failure.code,
                        "error": failure.message,
                        "after_seq": cursor.seq if cursor else None,
                        "after_offset": cursor.offset if cursor else None,
                        "delay_ms": round(delay * 1000),
                    },
                )
                self._resuming = True
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        except Exception:
            logger.exception("thread hub failed", extra=extra)
            self._fail(GatewayError("gateway error while following the session"))

    def _deliver(self, event: Event) -> bool:
        """Fans the event's frames out; True when the event is a CaughtUp."""
        frames = self._view.apply(event)
        for outbox in self._outboxes:
            outbox.offer_all(frames)
        if isinstance(event, CaughtUp):
            if self._resuming:
                self._resuming = False
                logger.info(
                    "subscription resumed",
                    extra={"session_id": self.thread_id, "after_seq": event.seq},
                )
            self._ready.set()
            return True
        return False

    def _fail(self, failure: GatewayError) -> None:
        """Gives up: waiting joins raise `failure`, joined sockets get it as a frame and close."""
        logger.warning(
            "thread hub gave up",
            extra={"session_id": self.thread_id, "code": failure.code, "error": failure.message},
        )
        self._failure = failure
        self._ready.set()
        denied = failure.code in ACCESS_CODES  # e.g. the user was removed from the room
        for outbox in self._outboxes:
            outbox.offer(error_frame(failure.message))
            if denied:
                outbox.finish(WSCloseCode.POLICY_VIOLATION, "no access to this session")
            else:
                outbox.finish(WSCloseCode.INTERNAL_ERROR, "session stream failed")
        self._outboxes.clear()
        self._on_gone(self)


class Hubs:
    """Every live ThreadHub of this gateway by thread id; a hub lives while it has users.

    Hub tasks run in the server's TaskGroup; `close` cancels them all at shutdown.
    """

    def __init__(self, client: SessionClient, tasks: asyncio.TaskGroup, ready_timeout_s: float):
        self._client = client
        self._tasks = tasks
        self._ready_timeout_s = ready_timeout_s
        self._hubs: dict[tuple[str, str], ThreadHub] = {}
        """By (thread, user): each authenticated user has their own upstream stream, so the
        owner authorises (and can end) each user's; anonymous sockets share one per thread."""

    def __len__(self) -> int:
        return len(self._hubs)

    async def attach(self, thread_id: str, outbox: Outbox, user: str = "") -> ThreadHub:
        """The thread's hub of `user` with `outbox` joined; starts the hub if this is its first
        socket. The hub's stream carries the token of the request that started it."""
        hub = self._hubs.get((thread_id, user))
        if hub is None:
            hub = ThreadHub(thread_id, self._client, self._forget, user)
            self._hubs[hub.key] = hub
            hub.start(self._tasks)
            logger.info("thread hub started", extra={"session_id": thread_id})
        hub.users += 1
        hub.metadata = upstream_metadata()
        try:
            await hub.join(outbox, self._ready_timeout_s)
        except BaseException:
            self._release(hub)
            raise
        return hub

    def detach(self, hub: ThreadHub, outbox: Outbox) -> None:
        hub.leave(outbox)
        self._release(hub)

    def close(self) -> None:
        for hub in list(self._hubs.values()):
            self._forget(hub)
            hub.stop()

    def _release(self, hub: ThreadHub) -> None:
        hub.users -= 1
        if hub.users == 0:
            self._forget(hub)
            hub.stop()
            logger.info("thread hub stopped", extra={"session_id": hub.thread_id})

    def _forget(self, hub: ThreadHub) -> None:
        if self._hubs.get(hub.key) is hub:
            del self._hubs[hub.key]
