"""One socket's outgoing frames: a queue bounded in frames and bytes, and its one writer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

logger = logging.getLogger(__name__)

DEFAULT_LIMIT_BYTES = 8 * 1024 * 1024
"""As WS_SEND_QUEUE_BYTES's default (gateway/config.py)."""


@dataclass(frozen=True)
class Close:
    """The last item of an outbox: close the socket with this code."""

    code: WSCloseCode
    reason: str


class Outbox:
    """One socket's bounded frame queue: producers offer without waiting, one writer sends.

    Frames leave in the order offered. The queue holds at most `limit` frames and `limit_bytes`
    bytes, counting a frame until the writer has handed it to the connection (for a client that
    does not read, until the connection's buffer drains). On overflow the queued frames are
    dropped, the socket is closed with 1013 and `overflowed` is set, so the socket's reader can
    close a connection whose writer is stuck on a client that stopped reading; one slow reader
    never slows the hub or the other sockets, nor grows the gateway's memory past the bound.
    """

    def __init__(
        self,
        limit: int,
        on_overflow: Callable[[], None] = lambda: None,
        limit_bytes: int = DEFAULT_LIMIT_BYTES,
    ) -> None:
        self._queue: asyncio.Queue[bytes | Close] = asyncio.Queue()
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._bytes = 0
        """Bytes of the frames queued or being written."""
        self._closing = False
        self._on_overflow = on_overflow
        self.overflowed = asyncio.Event()

    @property
    def closing(self) -> bool:
        """True once a close was queued: the writer will close the socket."""
        return self._closing

    def offer(self, frame: str | bytes) -> None:
        """Queues a text frame (bytes: already UTF-8)."""
        if self._closing:
            return
        data = frame.encode() if isinstance(frame, str) else frame
        if self._queue.qsize() >= self._limit or self._bytes + len(data) > self._limit_bytes:
            logger.warning(
                "socket send queue full; closing it",
                extra={
                    "limit": self._limit,
                    "limit_bytes": self._limit_bytes,
                    "queued_bytes": self._bytes,
                },
            )
            self._on_overflow()
            self.overflowed.set()
            self._close_now(Close(WSCloseCode.TRY_AGAIN_LATER, "send queue full"))
            return
        self._bytes += len(data)
        self._queue.put_nowait(data)

    def offer_all(self, frames: Iterable[str]) -> None:
        for frame in frames:
            self.offer(frame)

    def finish(self, code: WSCloseCode, reason: str) -> None:
        """Closes the socket after the frames already queued (or at once if there is no room)."""
        if self._closing:
            return
        if self._queue.qsize() >= self._limit:
            self._close_now(Close(code, reason))
            return
        self._closing = True
        self._queue.put_nowait(Close(code, reason))

    def _close_now(self, close: Close) -> None:
        self._closing = True
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not isinstance(item, Close):
                self._bytes -= len(item)
        self._queue.put_nowait(close)

    async def send_to(self, ws: web.WebSocketResponse) -> Close | None:
        """The socket's only writer: sends frames in order until a Close, which it returns for
        the socket's reader to close with (aiohttp completes the close handshake only when the
        task that reads closes), or None when the connection broke."""
        while True:
            item = await self._queue.get()
            if isinstance(item, Close):
                return item
            try:
                await ws.send_frame(item, WSMsgType.TEXT)
            except ConnectionError:
                return None
            finally:
                self._bytes -= len(item)
