"""Server-sent events (seed 002): `GET /api/chat/session/{id}/events` as `text/event-stream`.

The same events as the gRPC `Subscribe` stream, one SSE event each: `event:` is the event's kind
(`message_appended`, `state_changed`, `answer_started`, `answer_delta`, `answer_ended`,
`answer_restarted`, `caught_up`, ...), `data:` the event as proto3 JSON, and `id:` the stream
position after it, the resume cursor `seq:offset` of docs/resume.md. A client that reconnects
with `Last-Event-ID` (browsers' EventSource does so on its own) gets everything after that
position once, in order.
Without one, `?after=SEQ` starts after a log seq (`after=0`: the whole log); with neither, the
stream starts now. A malformed cursor is HTTP 400 before the stream starts.

When the owner moves or dies, the gateway resubscribes from the position it last sent, so the
client sees no gap, no duplicate and no disconnect; other upstream failures end the response
(the client reconnects with its Last-Event-ID). A comment line every HEARTBEAT_S keeps idle
connections open through proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator

from aiohttp import hdrs, web
from google.protobuf import json_format

from durablechat.v1 import session_pb2
from durablechat.v1.session_pb2 import SessionEvent
from gateway.abuse import UserCap
from gateway.errors import BadRequest, UpstreamError
from gateway.frames import Cursor
from gateway.identity import current_user
from gateway.upstream import SessionClient

logger = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RETRY_MS = 1000
"""Sent as `retry:`: how long an EventSource waits before reconnecting."""
RESUBSCRIBE_ATTEMPTS = 20
RESUBSCRIBE_BACKOFF_S = 0.1
_CURSOR = re.compile(r"([0-9]{1,19}):([0-9]{1,10})")
_SEQ = re.compile(r"[0-9]{1,19}")

Events = AsyncGenerator[SessionEvent, None]


def parse_cursor(last_event_id: str | None, after: str | None) -> Cursor | None:
    """The position to resume from; BadRequest when either value is malformed."""
    if last_event_id:
        match = _CURSOR.fullmatch(last_event_id.strip())
        if match is None:
            raise BadRequest("Last-Event-ID must be SEQ:OFFSET as sent in an event's id")
        return Cursor(int(match[1]), int(match[2]))
    if after is not None:
        if _SEQ.fullmatch(after) is None:
            raise BadRequest("after must be a log seq (a non-negative integer)")
        return Cursor(int(after), 0)
    return None


def advance(cursor: Cursor | None, event: session_pb2.SessionEvent) -> Cursor | None:
    """The cursor after `event` (docs/resume.md): deltas count batches, an answer's end or
    restart resets the count, CaughtUp states the position outright."""
    kind = event.WhichOneof("kind")
    if kind == "caught_up":
        return Cursor(event.seq, event.offset)
    if kind == "answer_delta":
        return None if cursor is None else Cursor(cursor.seq, event.offset + 1)
    if kind in ("answer_ended", "answer_restarted"):
        return Cursor(event.seq, 0)
    return Cursor(event.seq, cursor.offset if cursor is not None else 0)


def encode(event: session_pb2.SessionEvent, cursor: Cursor | None) -> bytes:
    data = json_format.MessageToJson(event, indent=None)
    head = f"id: {cursor.seq}:{cursor.offset}\n" if cursor is not None else ""
    return f"{head}event: {event.WhichOneof('kind')}\ndata: {data}\n\n".encode()


class EventStreams:
    """Serves the event streams; an authenticated user holds at most `max_per_user` of them on
    this gateway (MAX_STREAMS_PER_USER, 0: no cap): one more is 429 before anything upstream."""

    def __init__(
        self, client: SessionClient, heartbeat_s: float = HEARTBEAT_S, max_per_user: int = 0
    ) -> None:
        self._client = client
        self._heartbeat_s = heartbeat_s
        self._cap = UserCap(max_per_user, "event streams", "MAX_STREAMS_PER_USER")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        with self._cap.hold(current_user()):
            return await self._stream(request)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        cursor = parse_cursor(request.headers.get("Last-Event-ID"), request.query.get("after"))
        events = self._client.subscribe_raw(session_id, cursor)
        # The first event is awaited before the response starts, so a bad session id or an
        # unavailable service is an HTTP error with a JSON body, not an empty stream.
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            if request.method == hdrs.METH_HEAD:  # headers only (see threads_rest)
                return response
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            cursor = advance(cursor, first)
            await response.write(encode(first, cursor))
            await self._relay(session_id, events, cursor, response)
        except (ConnectionResetError, asyncio.CancelledError):
            logger.info("event stream left by the client", extra={"session_id": session_id})
        except UpstreamError as exc:
            logger.info("event stream ended: %s", exc, extra={"session_id": session_id})
        finally:
            await events.aclose()  # a no-op when _relay closed it already
        return response

    async def _relay(
        self,
        session_id: str,
        events: Events,
        cursor: Cursor | None,
        response: web.StreamResponse,
    ) -> None:
        """Writes events as they come, resubscribing from `cursor` when the owner moves."""
        attempts = 0
        while True:
            try:
                async with contextlib.aclosing(events):
                    while True:
                        event = await _next_or_heartbeat(events, response, self._heartbeat_s)
                        cursor = advance(cursor, event)
                        await response.write(encode(event, cursor))
                        attempts = 0
            except StopAsyncIteration:
                return
            except UpstreamError as exc:
                attempts += 1
                if not exc.retryable or cursor is None or attempts > RESUBSCRIBE_ATTEMPTS:
                    raise
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S * min(attempts, 10))
            events = self._client.subscribe_raw(session_id, cursor)


async def _next_or_heartbeat(
    events: Events, response: web.StreamResponse, heartbeat_s: float
) -> SessionEvent:
    """The next event; a comment line goes out every `heartbeat_s` while none comes. The pending
    read is never cancelled while the client is there (that would end the upstream stream)."""
    following = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({following}, timeout=heartbeat_s)
            if done:
                return following.result()
            await response.write(b": keep-alive\n\n")
    finally:
        if not following.done():
            # Wait for the cancelled read to finish, so the stream can be closed after it.
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
