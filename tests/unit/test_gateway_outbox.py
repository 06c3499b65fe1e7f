"""A socket's Outbox: frames leave in order; overflow drops the backlog and closes with 1013
(the writer returns the close; the socket's reader does it, gateway/ws.py)."""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode

from gateway.hub import Outbox


class RecordingSocket:
    """Stands in for a WebSocketResponse: records what the writer sends, and the close the
    writer hands back for the socket's reader to do."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.close_code: int | None = None

    async def send_str(self, data: str) -> None:
        self.frames.append(data)


async def drain(outbox: Outbox) -> RecordingSocket:
    socket = RecordingSocket()
    close = await asyncio.wait_for(outbox.send_to(socket), timeout=5)  # type: ignore[arg-type]
    socket.close_code = close.code if close is not None else None
    return socket


async def test_frames_leave_in_order_then_close():
    outbox = Outbox(limit=8)
    outbox.offer_all(["[LOADING]", "a", "b", "[DONE]"])
    outbox.finish(WSCloseCode.GOING_AWAY, "bye")
    socket = await drain(outbox)
    assert socket.frames == ["[LOADING]", "a", "b", "[DONE]"]
    assert socket.close_code == WSCloseCode.GOING_AWAY


async def test_overflow_drops_backlog_and_closes_try_again_later():
    outbox = Outbox(limit=2)
    outbox.offer_all(["a", "b", "c", "d"])
    socket = await drain(outbox)
    assert socket.frames == []
    assert socket.close_code == WSCloseCode.TRY_AGAIN_LATER


async def test_finish_on_a_full_queue_still_closes():
    outbox = Outbox(limit=1)
    outbox.offer("a")
    outbox.finish(WSCloseCode.INTERNAL_ERROR, "failed")
    outbox.offer("late")
    socket = await drain(outbox)
    assert socket.frames == []
    assert socket.close_code == WSCloseCode.INTERNAL_ERROR
