"""A socket's Outbox: frames leave in order; overflow (frames or bytes) drops the backlog and
closes with 1013 (the writer returns the close; the socket's reader does it, gateway/ws.py)."""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode, WSMsgType

from gateway.outbox import Outbox


class RecordingSocket:
    """Stands in for a WebSocketResponse: records what the writer sends, and the close the
    writer hands back for the socket's reader to do."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.close_code: int | None = None

    async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        assert opcode is WSMsgType.TEXT
        self.frames.append(data.decode())


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


async def test_bytes_over_the_byte_limit_close_try_again_later():
    outbox = Outbox(limit=100, limit_bytes=10)
    outbox.offer("12345")
    outbox.offer("67890")  # exactly 10 bytes queued: fits
    assert not outbox.overflowed.is_set()
    outbox.offer("x")
    assert outbox.overflowed.is_set()
    socket = await drain(outbox)
    assert socket.frames == []
    assert socket.close_code == WSCloseCode.TRY_AGAIN_LATER


async def test_a_frame_being_written_counts_until_the_socket_took_it():
    """A client that stopped reading leaves the writer waiting inside send_frame: that frame
    still counts, so queued bytes plus it stay within the limit."""
    writing, release = asyncio.Event(), asyncio.Event()

    class StuckSocket(RecordingSocket):
        async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
            writing.set()
            await release.wait()
            await super().send_frame(data, opcode)

    socket = StuckSocket()
    outbox = Outbox(limit=100, limit_bytes=8)
    writer = asyncio.create_task(outbox.send_to(socket))  # type: ignore[arg-type]
    outbox.offer("abcdef")
    await asyncio.wait_for(writing.wait(), timeout=5)  # the writer waits inside send_frame
    outbox.offer("gh")  # 8 bytes: fits
    assert not outbox.overflowed.is_set()
    outbox.offer("i")
    assert outbox.overflowed.is_set()
    release.set()
    close = await asyncio.wait_for(writer, timeout=5)
    assert close is not None and close.code == WSCloseCode.TRY_AGAIN_LATER
    assert socket.frames == ["abcdef"]


async def test_bytes_count_utf8_not_characters():
    outbox = Outbox(limit=100, limit_bytes=4)
    outbox.offer("éé")  # 4 bytes
    assert not outbox.overflowed.is_set()
    outbox.offer("é")
    assert outbox.overflowed.is_set()
