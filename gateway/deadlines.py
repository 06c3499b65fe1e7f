"""Deadlines on every gateway connection that aiohttp lacks: reading a request's head, and a
client that stops reading what it is sent.

Contract:
- Guaranteed: a connection is closed, without a reply, when a request head (request line and
  headers) is not complete HEADER_READ_TIMEOUT_MS after the connection opened or, on a
  kept-alive connection, after the first byte of the next request: a client that trickles
  header bytes (slowloris) or connects and sends nothing holds a connection that long at most.
- Guaranteed: a connection whose output is paused (more unsent than the transport's high-water
  mark) and whose unsent output does not shrink for SEND_STALL_TIMEOUT_MS (the client reads
  nothing) is aborted, its unsent output dropped: a reply, event stream or socket nobody reads
  holds memory that long at most.
- Not affected: a request once its head is complete (its body, an event stream, a WebSocket),
  idle kept-alive connections between requests (aiohttp's keep-alive timeout closes those), and
  clients that read, however slowly, within SEND_STALL_TIMEOUT_MS of each pause.
- Load: at most two timers per connection; a check per read, nothing per write.
- Depends on aiohttp's RequestHandler: `_waiter` is pending while it waits for a request and
  `_request_count` counts the heads parsed (aiohttp is pinned in requirements.txt;
  tests/security/test_bounded_reads.py fails if either changes meaning).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger(__name__)


class Deadlines(asyncio.Protocol):
    """Wraps one connection's RequestHandler, passing every event through. Owns two timers: the
    head being read (armed at connect, and at the first byte of a request after an idle spell;
    disarmed once the handler parsed a head), and paused output (armed when the transport
    pauses writing, re-armed while the unsent output shrinks, disarmed when writing resumes)."""

    def __init__(self, handler: RequestHandler, head_timeout_s: float, stall_timeout_s: float):
        self._handler = handler
        self._head_timeout_s = head_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0
        self._unsent_at_arm = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and _idle(self._handler):
            self._arm_head()  # the first bytes of the next request
        self._handler.data_received(data)
        if self._head_timer is not None and self._handler._request_count != self._heads_at_arm:
            self._disarm_head()

    def eof_received(self) -> None:
        self._handler.eof_received()  # None: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        self._disarm_stall()
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._stall_timer is None:
            self._arm_stall()
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._disarm_stall()
        self._handler.resume_writing()

    def _arm_head(self) -> None:
        self._heads_at_arm = self._handler._request_count
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._head_timeout_s, self._head_expired)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _disarm_stall(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._handler._request_count != self._heads_at_arm:
            return
        logger.info(
            "request head not complete within HEADER_READ_TIMEOUT_MS; connection closed",
            extra={"peer": self._peer(), "timeout_ms": round(self._head_timeout_s * 1000)},
        )
        self._handler.force_close()

    def _arm_stall(self) -> None:
        transport = self._handler.transport
        self._unsent_at_arm = transport.get_write_buffer_size() if transport is not None else 0
        loop = asyncio.get_running_loop()
        self._stall_timer = loop.call_later(self._stall_timeout_s, self._stall_expired)

    def _stall_expired(self) -> None:
        self._stall_timer = None
        transport = self._handler.transport
        if transport is None:
            return
        if transport.get_write_buffer_size() < self._unsent_at_arm:
            self._arm_stall()  # the client is reading, slowly
            return
        logger.info(
            "client read nothing for SEND_STALL_TIMEOUT_MS; connection aborted",
            extra={
                "peer": self._peer(),
                "timeout_ms": round(self._stall_timeout_s * 1000),
                "unsent_bytes": transport.get_write_buffer_size(),
            },
        )
        transport.abort()

    def _peer(self) -> str:
        transport = self._handler.transport
        return str(transport.get_extra_info("peername")) if transport is not None else ""


def _idle(handler: RequestHandler) -> bool:
    """Whether the handler waits for a request (between requests of a kept-alive connection)."""
    waiter = handler._waiter
    return waiter is not None and not waiter.done()


class DeadlineSite(web.BaseSite):
    """As web.TCPSite (host, port), with every connection under Deadlines."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        head_timeout_s: float,
        stall_timeout_s: float,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._head_timeout_s = head_timeout_s
        self._stall_timeout_s = stall_timeout_s

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        head_s, stall_s = self._head_timeout_s, self._stall_timeout_s

        def connection() -> asyncio.Protocol:
            return Deadlines(server(), head_s, stall_s)

        self._server = await asyncio.get_running_loop().create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
