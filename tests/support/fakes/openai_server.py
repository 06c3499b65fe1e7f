"""A real OpenAI-protocol streaming server on a background thread, with fault knobs for tests.

Every request answers `tok0 tok1 …` (`tokens` chunks, `delay_ms` apart; a trailing assistant
message of k tokens is continued from ` tok{k}`) unless a knob set for
the next request says otherwise: `fail_next_with(status)`, `cut_stream_after(n)` (drop the
connection mid-answer) or `stall_next()` (send nothing until the client gives up).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MODEL_ID = "fake-model"


@dataclass(frozen=True)
class _Fault:
    status: int = 0
    cut_after: int | None = None
    stall: bool = False


def chunk_writer() -> Callable[..., bytes]:
    """`event(delta, finish=None, **more)`: one SSE `chat.completion.chunk` line."""
    created = int(time.time())

    def event(delta: dict[str, str], finish: str | None = None, **more: Any) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": choices,
            **more,
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    return event


class FakeOpenAI:
    """Knobs are set from the test thread and read by the server thread under a lock."""

    def __init__(self, tokens: int = 5, delay_ms: int = 0) -> None:
        self._defaults = (tokens, delay_ms)
        self.tokens = tokens
        self.delay_ms = delay_ms
        self.requests: list[dict[str, Any]] = []
        self.hung_up = threading.Event()
        """Set when a client closed the connection in the middle of a stream."""
        self.port = 0
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next_with(self, status: int) -> None:
        self._push(_Fault(status=status))

    def cut_stream_after(self, chunks: int) -> None:
        self._push(_Fault(cut_after=chunks))

    def stall_next(self) -> None:
        self._push(_Fault(stall=True))

    def reset(self) -> None:
        """Back to the constructor's answer, no pending faults, nothing recorded."""
        self.tokens, self.delay_ms = self._defaults
        with self._lock:
            self._faults.clear()
            self.requests.clear()
        self.hung_up.clear()

    def _push(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _next_fault(self, body: dict[str, Any]) -> _Fault:
        with self._lock:
            self.requests.append(body)
            return self._faults.popleft() if self._faults else _Fault()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fault = self._next_fault(body)
        if fault.status:
            error = {"message": f"injected {fault.status}", "type": "fake", "param": None}
            return web.json_response({"error": {**error, "code": None}}, status=fault.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if fault.stall:
            assert self._stop is not None
            await self._stop.wait()
            return response
        await response.prepare(request)
        try:
            await self._write_answer(request, response, fault)
        except ConnectionResetError:
            self.hung_up.set()
        return response

    async def _write_answer(
        self, request: web.Request, response: web.StreamResponse, fault: _Fault
    ) -> None:
        event = chunk_writer()
        await response.write(event({"role": "assistant", "content": ""}))
        messages = (await request.json()).get("messages") or [{}]
        last = messages[-1]
        start = (
            len(str(last.get("content") or "").split()) if last.get("role") == "assistant" else 0
        )
        for index in range(start, self.tokens):
            if fault.cut_after is not None and index == fault.cut_after:
                assert request.transport is not None
                request.transport.abort()
                return
            if self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            await response.write(
                event({"content": f"tok{index}" if index == 0 else f" tok{index}"})
            )
        await response.write(event({}, "stop"))
        usage = {
            "prompt_tokens": 1,
            "completion_tokens": self.tokens,
            "total_tokens": self.tokens + 1,
        }
        await response.write(event({}, usage=usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
