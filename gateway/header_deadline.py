"""A deadline on reading each HTTP request's head (request line and headers): aiohttp has none.

Contract:
- Guaranteed: a connection is closed, without a reply, when a request head is not complete
  HEADER_READ_TIMEOUT_MS after the connection opened or, on a kept-alive connection, after the
  first byte of the next request. A client that trickles header bytes (slowloris) or connects
  and sends nothing holds a connection that long at most.
- Not affected: a request once its head is complete (its body, an event stream, a WebSocket),
  and idle kept-alive connections between requests (aiohttp's keep-alive timeout closes those).
- Load: one timer per connection while a head is being read; nothing per byte but a check.
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


class HeaderDeadline(asyncio.Protocol):
    """Wraps one connection's RequestHandler, passing everything through; owns the timer of the
    head being read (armed at connect, and at the first byte of a request after an idle
    spell; disarmed once the handler parsed a head)."""

    def __init__(self, handler: RequestHandler, timeout_s: float) -> None:
        self._handler = handler
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._timer is None and _idle(self._handler):
            self._arm()  # the first bytes of the next request
        self._handler.data_received(data)
        if self._timer is not None and self._handler._request_count != self._heads_at_arm:
            self._disarm()

    def eof_received(self) -> None:
        self._handler.eof_received()  # None: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def _arm(self) -> None:
        self._heads_at_arm = self._handler._request_count
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._handler._request_count != self._heads_at_arm:
            return
        peer = self._handler.transport.get_extra_info("peername") if self._handler.transport else ""
        logger.info(
            "request head not complete within HEADER_READ_TIMEOUT_MS; connection closed",
            extra={"peer": str(peer), "timeout_ms": round(self._timeout_s * 1000)},
        )
        self._handler.force_close()


def _idle(handler: RequestHandler) -> bool:
    """Whether the handler waits for a request (between requests of a kept-alive connection)."""
    waiter = handler._waiter
    return waiter is not None and not waiter.done()


class HeaderDeadlineSite(web.BaseSite):
    """As web.TCPSite (host, port), with every connection under HeaderDeadline."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, timeout_s: float) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._timeout_s = timeout_s

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        timeout_s = self._timeout_s

        def connection() -> asyncio.Protocol:
            return HeaderDeadline(server(), timeout_s)

        self._server = await asyncio.get_running_loop().create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
