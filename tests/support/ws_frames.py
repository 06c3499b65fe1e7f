"""The gateway's seed-000 WebSocket as a test reads it: frames up to `[DONE]`, the answer
they show, the history."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from deploy.stack.running import Stack

FRAME_TIMEOUT_S = 15.0


def ws_url(stack: Stack, thread_id: str, user: str = "ann") -> str:
    return f"{stack.gateway_url.replace('http://', 'ws://')}/ws/{thread_id}?user={user}"


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> str:
    message = await ws.receive(timeout=FRAME_TIMEOUT_S)
    assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data, message.extra)
    return str(message.data)


async def frames_through_done(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """Frames up to and including the next `[DONE]`."""
    frames = [await next_frame(ws)]
    while frames[-1] != "[DONE]":
        frames.append(await next_frame(ws))
    return frames


def answer_text(frames: list[str]) -> str:
    """The answer one `[LOADING]` … `[DONE]` block shows (no other block, no error frame)."""
    assert frames[0] == "[LOADING]" and frames[-1] == "[DONE]", frames
    body = frames[1:-1]
    assert not any(f in ("[LOADING]", "[DONE]") or f.startswith("[ERROR]") for f in body), frames
    return "".join(body)


async def history(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    await ws.send_str("(GET_HISTORY)")
    return list(json.loads(await next_frame(ws)))


def expected_answer(tokens: int) -> str:
    return " ".join(f"tok{i}" for i in range(tokens))
