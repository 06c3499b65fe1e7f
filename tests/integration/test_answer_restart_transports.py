"""An owner killed mid-answer, watched on every transport at once: the WebSocket, SSE, the gRPC
fan-out and gRPC-web through Envoy. Against both kinds of model (tests/support/generations.py):
every watcher ends with exactly the stored answer and never shows two generations glued; with a
model that answers afresh (ANSWER_CONTINUE=restart) each watcher is told to replace the answer
once: `[RESTART]` on the WebSocket, an `answer_restarted` event on the others.

Run with `-s` to see, frame by frame, what the WebSocket client received around the kill."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from google.protobuf import json_format

from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from durablechat.v1 import common_pb2, session_pb2
from tests.support import grpc_web
from tests.support.generations import KINDS, Shown, generation
from tests.support.grpc_client import SessionClient

pytestmark = pytest.mark.chaos

PODS = ("pod-a", "pod-b")
TOKENS = 600
KILL_AFTER_WORDS = 150
CONTROL = ("[LOADING]", "[DONE]", "[RESTART]")


class Watch:
    """What one watcher showed, and the frames or events it got (for the WebSocket, with the
    time each arrived)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = Shown()
        self.final = ""
        self.log: list[tuple[float, str]] = []


async def watch_ws(http: aiohttp.ClientSession, url: str, watch: Watch, go: asyncio.Event) -> None:
    async with http.ws_connect(url) as ws:
        go.set()
        async for message in ws:
            frame = str(message.data)
            watch.log.append((time.monotonic(), frame))
            if frame in ("[LOADING]", "[RESTART]"):
                watch.shown.replace()
            elif frame == "[DONE]":
                watch.final = watch.shown.text
                return
            elif frame.startswith("[ERROR] "):
                raise AssertionError(frame)
            else:
                watch.shown.append(frame.removeprefix("\\"))


def take(watch: Watch, event: session_pb2.SessionEvent, answer_seq: int) -> bool:
    """Applies one Subscribe event (gRPC or SSE as proto); True at the answer's end."""
    kind = event.WhichOneof("kind")
    if kind == "answer_delta" and event.seq == answer_seq:
        watch.shown.append(event.answer_delta.text)
    elif kind == "answer_restarted":
        assert event.answer_restarted.interrupted.content == watch.shown.text
        watch.shown.replace()
    elif kind == "answer_ended" and event.answer_ended.message.answer_seq == answer_seq:
        assert event.answer_ended.message.content == watch.shown.text, watch.name
        watch.final = watch.shown.text
        return True
    return False


async def watch_sse(http: aiohttp.ClientSession, url: str, watch: Watch, answer_seq: int) -> None:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=120)) as reply:
        data = ""
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and data:
                event = json_format.Parse(data, session_pb2.SessionEvent())
                data = ""
                if take(watch, event, answer_seq):
                    return


async def watch_fanout(client: SessionClient, sid: str, watch: Watch, answer_seq: int) -> None:
    async for reply in client.subscribe(sid, after_seq=answer_seq - 1):
        if take(watch, reply.event, answer_seq):
            return


async def watch_grpc_web(
    http: aiohttp.ClientSession, edge_url: str, sid: str, watch: Watch, answer_seq: int
) -> None:
    request = session_pb2.SubscribeRequest(session_id=sid, after_seq=answer_seq - 1)
    async for event in grpc_web.subscribe(http, edge_url, request):
        if take(watch, event, answer_seq):
            return


def show(frame: str) -> str:
    if frame in CONTROL or frame.startswith("[ERROR]"):
        return frame
    words = frame.split()
    return f"text {len(frame)} chars: {words[0]} … {words[-1]}" if len(words) > 2 else frame


def around_the_kill(ws: Watch, killed_at: float, context: int = 3) -> list[str]:
    """The WebSocket frames around the kill, one line each (ms relative to the kill): the
    first, the last `context` before the kill, those after it through `context` past the first
    `[RESTART]` after it (if any), and the last two."""
    frames = ws.log
    before = [i for i, (t, _) in enumerate(frames) if t < killed_at]
    after = [i for i, (t, f) in enumerate(frames) if t >= killed_at and f == "[RESTART]"]
    kept = {0, len(frames) - 2, len(frames) - 1}
    kept |= set(range(max(0, (before[-1] if before else 0) - context + 1), len(before)))
    kept |= set(range(len(before), (after[0] if after else len(before)) + context + 1))
    lines, last = [], -1
    for index, (t, frame) in enumerate(frames):
        if index == len(before):
            lines.append(f"{0:+8.0f} ms  -- kill -9 of the owner pod --")
        if index not in kept:
            continue
        if index > last + 1:
            lines.append(f"{'':>11}  ... {index - last - 1} more text frames")
        lines.append(f"{(t - killed_at) * 1000:+8.0f} ms  {show(frame)}")
        last = index
    return lines


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
async def test_every_transport_ends_with_the_stored_answer_across_an_owner_kill(
    own_stack: Stack, model_env: dict[str, str], ai_env: dict[str, str]
) -> None:
    spec = StackSpec(
        pods=PODS,
        wait_members=True,
        envoy=True,
        token_delay_ms=5,
        model_env=model_env,
        ai_env=ai_env,
    )
    stack = start(own_stack, spec)
    restart = bool(ai_env)
    sid = next(s for s in (f"rt-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    ws_url = f"{stack.gateway_url.replace('http://', 'ws://')}/ws/{sid}?user=ann"
    watches = {name: Watch(name) for name in ("websocket", "sse", "fan-out", "grpc-web")}
    pod_b = SessionClient(stack.pod_addrs["pod-b"])
    fanout = SessionClient(stack.fanout_addr)
    async with aiohttp.ClientSession() as http:
        try:
            await pod_b.append(sid, "warm up")
            connected = asyncio.Event()
            ws_task = asyncio.create_task(watch_ws(http, ws_url, watches["websocket"], connected))
            await asyncio.wait_for(connected.wait(), 10)
            sent = await pod_b.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
            a = sent.answer_seq
            sse_url = f"{stack.gateway_url}/api/chat/session/{sid}/events?after={a - 1}"
            tasks = [
                ws_task,
                asyncio.create_task(watch_sse(http, sse_url, watches["sse"], a)),
                asyncio.create_task(watch_fanout(fanout, sid, watches["fan-out"], a)),
                asyncio.create_task(
                    watch_grpc_web(http, stack.envoy_url, sid, watches["grpc-web"], a)
                ),
            ]
            while len(watches["websocket"].shown.text.split()) < KILL_AFTER_WORDS:
                await asyncio.wait(tasks, timeout=0.005, return_when=asyncio.FIRST_EXCEPTION)
                for task in tasks:
                    if task.done():
                        task.result()
            stack.pods["pod-a"].kill9()
            killed_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            every = await pod_b.stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id=sid, all_branches=True, limit=100)
            )
        finally:
            await pod_b.close()
            await fanout.close()
    versions = [m for m in every.messages if m.answer_seq == sent.answer_seq]
    stored = versions[-1]
    print(f"\nANSWER_CONTINUE={'restart' if restart else 'prefill'}: what a WebSocket client got")
    print("\n".join(around_the_kill(watches["websocket"], killed_at)))
    print(f"stored answer: {show(stored.content)}; versions: {len(versions)}")
    assert stored.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    assert stored.content == generation(2 if restart else 0, TOKENS)
    if restart:
        assert versions[0].answer_status == common_pb2.ANSWER_STATUS_INTERRUPTED
        assert versions[0].content.startswith("g1tok0 ")
    else:
        assert len(versions) == 1
    for watch in watches.values():
        assert watch.final == stored.content, watch.name
        assert not watch.shown.glued, (watch.name, watch.shown.glued[-200:])
        # The WebSocket's [LOADING] counts as a replace too.
        expected = int(restart) + (watch.name == "websocket")
        assert watch.shown.replaced == expected, (watch.name, watch.shown.replaced)
