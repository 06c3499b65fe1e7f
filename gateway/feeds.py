"""One upstream Subscribe per (session, user) on this gateway, fanned out to its gRPC streams.

Contract (docs/design.md "Fan-out"; served by gateway/fanout_server.py):
- A feed follows the session from seq 0 (its EventWindow keeps the newest FANOUT_WINDOW_EVENTS
  log events and the open answers' batches) and keeps following it across owner moves and
  restarts: on a retryable failure it resubscribes from its cursor with backoff, as the
  WebSocket hub does (gateway/hub.py), so its streams see no break, no repeat and no gap.
- A stream joins after the feed's first CaughtUp (bounded by the caller's timeout) and gets
  the window's replay for its cursor, then every new event in the feed's order; the replay and
  the live events are taken on the event loop without an await between them, so they neither
  overlap nor leave a gap.
- A failure no retry can change (NOT_FOUND: e.g. the user was removed from the room,
  PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT) ends every stream of the feed at once
  with that status.
- A stream more than `queue` events behind is ended RESOURCE_EXHAUSTED (resubscribe from your
  cursor), as the owner ends a slow subscriber; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable

from durablechat.v1 import session_pb2
from gateway.errors import GatewayError, UpstreamError
from gateway.event_window import EventWindow
from gateway.frames import Cursor
from gateway.identity import use_metadata
from gateway.upstream import SessionClient

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.01
"""The first resubscribe comes at once (5-10 ms): failover waits in the pods (a dead owner's
successor serves the call once the owner is dropped; a moving session, once moved:
docs/failover.md), so only repeated failures back off, doubling up to MAX_BACKOFF_S."""
MAX_BACKOFF_S = 2.0
Metadata = tuple[tuple[str, str], ...]


def slow(queue: int) -> UpstreamError:
    return UpstreamError(
        f"subscriber fell {queue} events behind; resubscribe from your cursor",
        status=429,
        code="RESOURCE_EXHAUSTED",
        retryable=True,
    )


class FeedStream:
    """One gRPC stream of a feed: its replay, then live events, bounded; one reader (`next`)."""

    def __init__(self, replay: list[bytes], queue: int) -> None:
        self._replay: deque[bytes] = deque(replay)
        """Owed whole, as the owner's replay: not counted against the bound."""
        self._live: deque[bytes] = deque()
        self._queue = queue
        self._wakeup = asyncio.Event()
        self._error: GatewayError | None = None

    def push(self, data: bytes) -> None:
        if self._error is not None:
            return
        if len(self._live) >= self._queue:
            self._replay.clear()  # cut at once: what is queued would only delay the news
            self._live.clear()
            self.close(slow(self._queue))
            return
        self._live.append(data)
        self._wakeup.set()

    def close(self, error: GatewayError) -> None:
        if self._error is None:
            self._error = error
            self._wakeup.set()

    async def next(self) -> bytes:
        """The next encoded SubscribeResponse; raises the close reason once the events before
        it were taken."""
        while True:
            if self._replay:
                return self._replay.popleft()
            if self._live:
                return self._live.popleft()
            if self._error is not None:
                raise self._error
            await self._wakeup.wait()
            self._wakeup.clear()


class Feed:
    """One (session, user)'s upstream stream, its EventWindow and its gRPC streams here."""

    def __init__(
        self,
        session_id: str,
        user: str,
        client: SessionClient,
        window: int,
        on_gone: Callable[[Feed], None],
    ) -> None:
        self.key = (session_id, user)
        self.session_id = session_id
        self.user = user
        self.metadata: Metadata = ()
        """The token of the newest stream: what a resubscription carries."""
        self.users = 0
        self._client = client
        self._window = EventWindow(window)
        self._streams: set[FeedStream] = set()
        self._ready = asyncio.Event()
        self._caught_up = False
        self._failure: GatewayError | None = None
        self._last_error: GatewayError | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_gone = on_gone

    def start(self, tasks: asyncio.TaskGroup) -> None:
        self._task = tasks.create_task(self._run(), name=f"feed:{self.session_id}")

    def stop(self) -> None:
        """Ends the upstream stream; streams still here (a shutdown) get UNAVAILABLE."""
        if self._task is not None:
            self._task.cancel()
        stopping = UpstreamError(
            "gateway is shutting down; resubscribe from your cursor",
            status=503,
            code="UNAVAILABLE",
            retryable=True,
        )
        if not self._ready.is_set():
            self._failure = stopping
            self._ready.set()
        for stream in self._streams:
            stream.close(stopping)
        self._streams.clear()

    async def join(
        self, after_seq: int | None, after_offset: int, queue: int, timeout_s: float
    ) -> FeedStream | None:
        """A stream from the cursor (None: the window cannot serve it: ask the owner)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError as exc:
            if self._last_error is not None:
                raise self._last_error from exc
            raise UpstreamError(
                "session service did not answer the subscription in time",
                status=504,
                code="DEADLINE_EXCEEDED",
                retryable=True,
            ) from exc
        if self._failure is not None:
            raise self._failure
        replay = self._window.replay(after_seq, after_offset, self.user)
        if replay is None:
            return None
        stream = FeedStream(replay, queue)
        self._streams.add(stream)
        return stream

    def leave(self, stream: FeedStream) -> None:
        self._streams.discard(stream)

    async def _run(self) -> None:
        backoff = INITIAL_BACKOFF_S
        extra = {"session_id": self.session_id}
        try:
            while True:
                failure: GatewayError = UpstreamError(
                    "subscription ended", status=503, code="UNAVAILABLE", retryable=True
                )
                started = self._caught_up
                seq, offset = self._window.cursor
                try:
                    use_metadata(self.metadata)
                    events = self._client.subscribe_raw(self.session_id, Cursor(seq, offset))
                    async with contextlib.aclosing(events):
                        async for event in events:
                            if self._deliver(event):
                                backoff = INITIAL_BACKOFF_S
                except GatewayError as exc:
                    failure = exc
                self._last_error = failure
                if not failure.retryable:
                    self._fail(failure)
                    return
                delay = random.uniform(backoff / 2, backoff)
                logger.warning(
                    "feed subscription failed; resubscribing",
                    extra={
                        **extra,
                        "code": failure.code,
                        "error": failure.message,
                        "after_seq": seq if started else None,
                        "delay_ms": round(delay * 1000),
                    },
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        except Exception:
            logger.exception("feed failed", extra=extra)
            self._fail(GatewayError("gateway error while following the session"))

    def _deliver(self, event: session_pb2.SessionEvent) -> bool:
        """Applies one upstream event and fans it out; True once the feed is caught up."""
        data = self._window.apply(event)
        kind = event.WhichOneof("kind")
        if data is not None:
            for stream in list(self._streams):
                stream.push(data)
        if kind == "caught_up":
            self._caught_up = True
            if not self.user:  # a signed-in stream's PresenceChanged follows: wait for it
                self._ready.set()
            return True
        if kind == "presence_changed" and self._caught_up:
            self._ready.set()
        return False

    def _fail(self, failure: GatewayError) -> None:
        logger.warning(
            "feed gave up",
            extra={"session_id": self.session_id, "code": failure.code, "error": failure.message},
        )
        self._failure = failure
        self._ready.set()
        for stream in self._streams:
            stream.close(failure)
        self._streams.clear()
        self._on_gone(self)


class Feeds:
    """Every live Feed of this gateway by (session, user); a feed lives while it has streams.

    By user, as the WebSocket hubs: the owner authorises each user's feed and ends it when the
    user loses access; anonymous streams share one feed per session. Feed tasks run in the
    server's TaskGroup; `close` cancels them at shutdown.
    """

    def __init__(
        self,
        client: SessionClient,
        tasks: asyncio.TaskGroup,
        ready_timeout_s: float,
        window: int,
        queue: int,
    ) -> None:
        self._client = client
        self._tasks = tasks
        self._ready_timeout_s = ready_timeout_s
        self._window = window
        self._queue = queue
        self._feeds: dict[tuple[str, str], Feed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    async def attach(
        self,
        session_id: str,
        user: str,
        metadata: Metadata,
        after_seq: int | None,
        after_offset: int,
    ) -> tuple[Feed, FeedStream | None]:
        """The (session, user) feed, started if new, and a stream of it from the cursor (None:
        the feed cannot serve that cursor). Release it with `detach` either way."""
        feed = self._feeds.get((session_id, user))
        if feed is None:
            feed = Feed(session_id, user, self._client, self._window, self._forget)
            self._feeds[feed.key] = feed
            feed.start(self._tasks)
            logger.info("feed started", extra={"session_id": session_id})
        feed.users += 1
        feed.metadata = metadata
        try:
            stream = await feed.join(after_seq, after_offset, self._queue, self._ready_timeout_s)
        except BaseException:
            self._release(feed)
            raise
        return feed, stream

    def detach(self, feed: Feed, stream: FeedStream | None) -> None:
        if stream is not None:
            feed.leave(stream)
        self._release(feed)

    def close(self) -> None:
        for feed in list(self._feeds.values()):
            self._forget(feed)
            feed.stop()

    def _release(self, feed: Feed) -> None:
        feed.users -= 1
        if feed.users == 0:
            self._forget(feed)
            feed.stop()
            logger.info("feed stopped", extra={"session_id": feed.session_id})

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
