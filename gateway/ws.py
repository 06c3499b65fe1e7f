"""Seed 000's WebSocket `/ws/{thread_id}?user=`: prompts and `(GET_HISTORY)` in, frames out.

`(GET_HISTORY)` answers the newest messages within MAX_HISTORY_REPLY_BYTES (gateway/history.py);
a socket more than WS_SEND_QUEUE frames or WS_SEND_QUEUE_BYTES behind is closed with 1013, and
its connection aborted when its client has stopped reading (docs/bounded-reads.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from opentelemetry import trace

from gateway.abuse import UserCap
from gateway.config import Config
from gateway.errors import BadRequest, GatewayError
from gateway.frames import error_frame, prompt_text
from gateway.history import history_frame, history_item, newest_that_fit
from gateway.hub import Hubs
from gateway.identity import WS_PROTOCOL, current_user
from gateway.metrics import GatewayMetrics
from gateway.outbox import Close, Outbox
from gateway.upstream import SessionClient

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

GET_HISTORY = "(GET_HISTORY)"
CANCEL = "(CANCEL)"
"""Stops the answer streaming on the thread: every socket gets the rest of what was stored (if
any), then `[ERROR] answer cancelled` and `[DONE]`."""
MAX_USER_CHARS = 128
"""As the session service's limit on a message's user name."""
HEARTBEAT_S = 20.0
"""Ping interval; a peer that stops answering is dropped, which also frees a stuck writer."""


CLOSE_TIMEOUT_S = 2.0
"""How long a close we start waits for the client's close frame before the connection is cut
(a client that is not reading must not hold shutdown up)."""
CLOSE_SEND_TIMEOUT_S = 2 * CLOSE_TIMEOUT_S
"""How long a close may take in all, sending the close frame included: a client that stopped
reading never takes it, and its connection is then aborted (its unsent frames dropped)."""
ENDS = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


class SocketRoutes:
    """Serves the thread sockets. A socket joins its thread's hub before the upgrade is accepted.

    Every frame a socket gets goes through its Outbox (one writer per socket); the outboxes of
    open sockets are kept so shutdown can close them all with 1001.
    """

    def __init__(
        self, cfg: Config, client: SessionClient, hubs: Hubs, metrics: GatewayMetrics
    ) -> None:
        self._cfg = cfg
        self._client = client
        self._hubs = hubs
        self._metrics = metrics
        self._cap = UserCap(cfg.max_sockets_per_user, "sockets", "MAX_SOCKETS_PER_USER")
        self._open: set[Outbox] = set()
        metrics.watch(lambda: len(self._open), lambda: len(hubs))

    async def connect(self, request: web.Request) -> web.StreamResponse:
        thread_id = request.match_info["thread_id"]
        user = current_user() or request.query.get("user", "")  # a token's user wins
        if len(user) > MAX_USER_CHARS:  # the session service would refuse every prompt
            raise BadRequest(f"user is longer than {MAX_USER_CHARS} characters")
        ws = web.WebSocketResponse(
            max_msg_size=self._cfg.ws_max_message_bytes,
            heartbeat=HEARTBEAT_S,
            protocols=(WS_PROTOCOL,),
            timeout=CLOSE_TIMEOUT_S,
        )
        if not ws.can_prepare(request).ok:
            raise BadRequest("expected a WebSocket upgrade request")
        with self._cap.hold(current_user()):  # 429 at the cap (authenticated users only)
            return await self._serve(request, ws, thread_id, user)

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, thread_id: str, user: str
    ) -> web.StreamResponse:
        if current_user():
            # Claims a new thread for the user, or checks they are a member: someone else's
            # thread is a 404 before the upgrade (AUTH_MODE=jwt).
            await self._client.open_room(thread_id)
        outbox = Outbox(
            self._cfg.ws_send_queue,
            self._metrics.dropped_sockets.inc,
            self._cfg.ws_send_queue_bytes,
        )
        # Joined before the upgrade: an unusable thread answers HTTP 400/503, and a prompt sent
        # right after the upgrade is answered on a stream that is already caught up.
        hub = await self._hubs.attach(thread_id, outbox, current_user())
        writer: asyncio.Task[Close | None] | None = None
        overflowed = asyncio.ensure_future(outbox.overflowed.wait())
        close: Close | None = None
        self._open.add(outbox)
        extra = {"session_id": thread_id, "user": user}
        try:
            await ws.prepare(request)
            writer = asyncio.create_task(outbox.send_to(ws), name=f"ws-writer:{thread_id}")
            logger.info("socket connected", extra=extra)
            while (message := await _receive_unless_done(ws, writer, overflowed)) is not None:
                if message.type in ENDS:
                    break
                await self._receive(thread_id, user, message, outbox)
            if overflowed.done():  # the writer may be stuck on a client that stopped reading
                close = Close(WSCloseCode.TRY_AGAIN_LATER, "send queue full")
            elif writer.done() and not writer.cancelled() and writer.exception() is None:
                close = writer.result()  # the writer sent everything before it: close now
        except Exception:
            logger.exception("socket failed", extra=extra)
        finally:
            overflowed.cancel()
            self._open.discard(outbox)
            self._hubs.detach(hub, outbox)
            if writer is not None:
                if outbox.overflowed.is_set():
                    # A slow client may still take the frame being written, then its 1013;
                    # one that reads nothing is cut when this wait ends (_close).
                    await asyncio.wait([writer], timeout=CLOSE_SEND_TIMEOUT_S)
                await _stop_writer(writer)
            if ws.prepared:
                await _close(request, ws, close)
            code = ws.close_code or (close.code if close else None)  # None: aborted
            logger.info("socket closed", extra={**extra, "close_code": code})
        return ws

    def close_all(self) -> None:
        """Shutdown: every open socket closes with 1001 once its queued frames are sent."""
        for outbox in self._open:
            outbox.finish(WSCloseCode.GOING_AWAY, "server shutting down")

    async def _receive(self, thread_id: str, user: str, message: WSMessage, outbox: Outbox) -> None:
        if message.type is WSMsgType.BINARY:
            outbox.offer(error_frame("binary frames are not supported; send text"))
            return
        if message.type is not WSMsgType.TEXT:
            return
        try:
            if message.data == GET_HISTORY:
                limit = self._cfg.max_history_reply_bytes
                tail = await newest_that_fit(self._client, thread_id, limit, history_item)
                outbox.offer(history_frame(tail, limit))
            elif message.data == CANCEL:
                await self._client.cancel_answer(thread_id)
            else:
                # One trace per prompt: gateway → owner pod → AI service → model.
                with _tracer.start_as_current_span(
                    "ws prompt", kind=trace.SpanKind.SERVER, attributes={"session.id": thread_id}
                ):
                    text = prompt_text(message.data)
                    await self._client.send_prompt(thread_id, text, user)
        except GatewayError as exc:
            outbox.offer(error_frame(exc.message))


async def _receive_unless_done(
    ws: web.WebSocketResponse, writer: asyncio.Task[Close | None], overflowed: asyncio.Future[Any]
) -> WSMessage | None:
    """The socket's next message, or None once the writer is done (it wants the socket closed,
    or the connection broke) or the send queue overflowed: the reading task must do the close
    for aiohttp to complete the close handshake (closing from another task cuts the
    connection, clients see 1006)."""
    if writer.done() or overflowed.done():
        return None
    receive = asyncio.ensure_future(ws.receive())
    await asyncio.wait({receive, writer, overflowed}, return_when=asyncio.FIRST_COMPLETED)
    if receive.done():
        return receive.result()
    receive.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receive
    return None


async def _close(request: web.Request, ws: web.WebSocketResponse, close: Close | None) -> None:
    """Closes with `close` (or 1000) within CLOSE_SEND_TIMEOUT_S. A connection whose output is
    not draining (its client stopped reading; our writer may have been cancelled waiting for
    it) is aborted instead: a close frame would never reach the client, a plain close would keep
    the buffer until the client reads it (for ever), and aiohttp's drain of it cannot be waited
    for again once a waiting writer was cancelled."""
    transport = request.transport
    if transport is not None and _not_draining(transport):
        logger.info("socket's client is not reading; aborting the connection")
        transport.abort()
        return
    code, reason = (close.code, close.reason.encode()) if close else (WSCloseCode.OK, b"")
    try:
        async with asyncio.timeout(CLOSE_SEND_TIMEOUT_S):
            await ws.close(code=code, message=reason)
    except TimeoutError:
        logger.info("socket close timed out; aborting the connection")
    if transport is not None and transport.get_write_buffer_size():
        transport.abort()


def _not_draining(transport: asyncio.BaseTransport) -> bool:
    """More output waiting than the transport's low-water mark: writes may be paused."""
    if not isinstance(transport, asyncio.WriteTransport):
        return False
    low, _ = transport.get_write_buffer_limits()
    return transport.get_write_buffer_size() > low


async def _stop_writer(writer: asyncio.Task[Close | None]) -> None:
    """Cancels the writer and waits for it, logging (never losing) an error it ended with."""
    writer.cancel()
    await asyncio.wait([writer])
    if not writer.cancelled() and writer.exception() is not None:
        logger.error("socket writer failed", exc_info=writer.exception())
