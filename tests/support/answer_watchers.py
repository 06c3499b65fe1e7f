"""Watchers of one streaming answer, as clients see it across an owner's death: a gRPC
subscriber that resubscribes from its cursor, and a WebSocket socket on the gateway.

Both apply the stream contract (docs/resume.md): deltas append at their offset, `AnswerRestarted`
(WebSocket `[RESTART]`) replaces the text shown so far, the answer's end carries the stored text.
Each keeps what it showed and when, so a test can say what a client saw around a kill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import grpc

from durablechat.v1 import common_pb2, session_pb2
from tests.support.grpc_client import SessionClient
from tests.support.ws_frames import next_frame

RESUBSCRIBE_BACKOFF_S = 0.05


class GrpcWatcher:
    """Subscribes to `sid` and follows the answer `answer_seq` to its end, resubscribing with
    its cursor whenever the stream breaks (the owner died)."""

    def __init__(
        self,
        client: SessionClient,
        sid: str,
        answer_seq: int,
        shows: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self.client, self.sid, self.answer_seq = client, sid, answer_seq
        self.text = ""
        """What this client shows now: the deltas since the last restart."""
        self._shows = shows
        self.refused = ""
        """The first text shown that `shows` refused ("" if none was), e.g. two generations
        glued (tests/support/generations.py `one_generation`)."""
        self.first_generation: dict[int, str] = {}
        """The batches of the first generation, by offset (a restart does not clear them)."""
        self.restarts: list[common_pb2.Message] = []
        """The interrupted versions AnswerRestarted events replaced, in order."""
        self.final: common_pb2.Message | None = None
        self.cursor: tuple[int, int] = (0, 0)
        self.resubscribed = 0
        self.grew = asyncio.Event()
        """Set whenever text arrives (a test waits on it for enough text to kill mid-answer)."""

    async def run(self) -> None:
        while self.final is None:
            stream = self.client.subscribe(
                self.sid, after_seq=self.cursor[0], after_offset=self.cursor[1]
            )
            try:
                async for reply in stream:
                    self.take(reply.event)
                    if self.final is not None:
                        break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                self.resubscribed += 1
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
            finally:
                stream.cancel()

    def take(self, event: session_pb2.SessionEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "answer_delta":
            assert event.offset == self.cursor[1], "a batch arrived twice or one is missing"
            if not self.restarts:
                self.first_generation[event.offset] = event.answer_delta.text
            self.text += event.answer_delta.text
            if not self.refused and not self._shows(self.text):
                self.refused = self.text
            self.cursor = (self.cursor[0], event.offset + 1)
            self.grew.set()
        elif kind == "answer_restarted":
            assert event.answer_restarted.interrupted.content == self.text
            self.restarts.append(event.answer_restarted.interrupted)
            self.text = ""  # replace, never append
            self.cursor = (event.seq, 0)
        elif kind == "caught_up":
            self.cursor = (event.seq, event.offset)
        else:
            ended = kind == "answer_ended"
            self.cursor = (event.seq, 0 if ended else self.cursor[1])
            if ended and event.answer_ended.message.answer_seq == self.answer_seq:
                self.final = event.answer_ended.message

    async def until_words(self, words: int) -> None:
        """Returns once the text shown has at least `words` words."""
        while True:
            self.grew.clear()
            if len(self.text.split()) >= words:
                return
            await self.grew.wait()

    def prefix(self, batches: int) -> str:
        """The first `batches` batches of the first generation, joined."""
        return "".join(self.first_generation[offset] for offset in range(batches))


class WsWatcher:
    """A gateway WebSocket on the thread, reading frames until `[DONE]`; each frame is kept with
    the time it arrived (seconds since `started`)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.started = time.monotonic()
        self.frames: list[tuple[float, str]] = []

    async def run(self) -> None:
        while not self.frames or self.frames[-1][1] != "[DONE]":
            frame = await next_frame(self.ws)
            self.frames.append((time.monotonic() - self.started, frame))

    @property
    def shown(self) -> str:
        """The text the page shows at the end: the frames since the last `[LOADING]` or
        `[RESTART]`, up to `[DONE]`, each without one leading backslash (gateway/frames.py)."""
        shown: list[str] = []
        for _, frame in self.frames:
            if frame in ("[LOADING]", "[RESTART]"):
                shown = []
            elif frame != "[DONE]":
                assert not frame.startswith("[ERROR]"), self.frames
                shown.append(frame.removeprefix("\\"))  # an escaped text frame
        return "".join(shown)

    def transcript(self, around: float, each_side: int = 8) -> str:
        """The `each_side` frames before and after `around` (a kill's time on the same clock)
        and every control frame, one a line, timed relative to `around`."""
        before = [i for i, (at, _) in enumerate(self.frames) if at <= around][-each_side:]
        after = [i for i, (at, _) in enumerate(self.frames) if at > around][:each_side]
        keep = set(before + after)
        return "\n".join(
            f"{at - around:+.3f}s {frame!r}"
            for i, (at, frame) in enumerate(self.frames)
            if i in keep or frame in ("[LOADING]", "[RESTART]", "[DONE]")
        )
