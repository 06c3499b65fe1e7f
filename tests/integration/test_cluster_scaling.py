"""Scaling 1 → 3 → 1 session pods under load through the gateway: no client sees an error,
no socket closes, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from tests.support.ledger import Ledger, Stored
from tests.support.ws_frames import frames_through_done, history

pytestmark = pytest.mark.slow

SESSIONS = 12
PODS = ["pod-1", "pod-2", "pod-3"]


def expected(tokens: int) -> str:
    return " ".join(f"tok{i}" for i in range(tokens))


async def chat(http: aiohttp.ClientSession, base: str, sid: str, stop: asyncio.Event) -> int:
    """Prompts over one socket until told to stop; every answer must arrive whole."""
    sent = 0
    async with http.ws_connect(f"{base.replace('http', 'ws')}/ws/{sid}?user=u") as ws:
        while not stop.is_set():
            await ws.send_str(f"p{sent} tokens=8")
            frames = await frames_through_done(ws)
            assert frames[0] == "[LOADING]" and frames[-1] == "[DONE]", frames
            assert "".join(frames[1:-1]) == expected(8), frames
            sent += 1
        entries = await history(ws)
    assert [e["content"] for e in entries if e["role"] == "user"] == [
        f"p{i} tokens=8" for i in range(sent)
    ]
    assert [e["content"] for e in entries if e["role"] == "assistant"] == [expected(8)] * sent
    return sent


async def post(http: aiohttp.ClientSession, base: str, sid: str, stop: asyncio.Event) -> int:
    """Appends with idempotency keys over REST until told to stop; every call must succeed."""
    sent = 0
    ledger = Ledger()
    while not stop.is_set():
        body = {"role": "user", "content": f"rest{sent}", "clientMessageId": f"{sid}-{sent}"}
        async with http.post(f"{base}/api/chat/session/{sid}-rest/messages", json=body) as reply:
            assert reply.status in (200, 201), await reply.text()  # 200: a retry found it
            ledger.record(sid, f"{sid}-{sent}", f"rest{sent}", (await reply.json())["seq"])
        sent += 1
    async with http.get(f"{base}/api/chat/session/{sid}-rest/messages?limit=1000") as reply:
        stored = (await reply.json())["messages"]
    assert [m["content"] for m in stored] == [f"rest{i}" for i in range(sent)]
    ledger.assert_kept(sid, [Stored(m["seq"], m["content"]) for m in stored])
    return sent


async def test_scaling_one_to_three_to_one_pods_under_load_loses_nothing(own_stack: Stack):
    stack = own_stack
    stack.start_redis()
    stack.start_model(token_delay_ms=2)
    stack.start_ai()
    addresses = ",".join(stack.reserve_pod(p) for p in PODS)
    stack.start_pod("pod-1")
    stack.start_gateway(session_addrs=addresses)
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        load = [
            asyncio.create_task(work(http, stack.gateway_url, f"s{i}", stop))
            for i in range(SESSIONS)
            for work in (chat, post)
        ]
        progress = asyncio.gather(*load)
        await asyncio.to_thread(stack.start_pod, "pod-2")
        await asyncio.to_thread(stack.start_pod, "pod-3")
        await asyncio.to_thread(stack.pods["pod-1"].stop)
        await asyncio.to_thread(stack.pods["pod-2"].stop)
        stop.set()
        counts = await progress
    assert all(count > 0 for count in counts)
    assert stack.pods["pod-3"].alive()


async def test_gateway_routes_by_the_ring_so_paused_other_pods_do_not_stall_a_session(
    own_stack: Stack,
):
    stack = own_stack
    stack.start_redis()
    addresses = ",".join(stack.reserve_pod(p) for p in PODS)
    for pod in PODS:
        stack.start_pod(pod)
    stack.start_gateway(session_addrs=addresses)
    assert stack.gateway is not None
    gateway_log = stack.gateway.log_path
    eventually(lambda: '"pods": ["pod-1", "pod-2", "pod-3"]' in gateway_log.read_text())
    ring = HashRing(PODS)
    sessions = [s for s in (f"ring-{i}" for i in range(60)) if ring.owner(s) == "pod-1"][:10]
    paused = [stack.pods["pod-2"], stack.pods["pod-3"]]
    for proc in paused:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        timeout = aiohttp.ClientTimeout(total=3)  # a call sent to a paused pod would hang 5 s
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for sid in sessions:
                body = {"role": "user", "content": "hi"}
                async with http.post(
                    f"{stack.gateway_url}/api/chat/session/{sid}/messages", json=body
                ) as reply:
                    assert reply.status == 201, await reply.text()
    finally:
        for proc in paused:
            os.kill(proc.pid, signal.SIGCONT)


async def test_socket_follows_its_session_off_a_paused_owner_without_waiting_for_keepalive(
    own_stack: Stack,
):
    stack = own_stack
    stack.start_redis()
    stack.start_model(token_delay_ms=1)
    stack.start_ai()
    addresses = ",".join(stack.reserve_pod(p) for p in PODS)
    for pod in PODS:
        stack.start_pod(pod)
    stack.start_gateway(session_addrs=addresses)
    assert stack.gateway is not None
    gateway_log = stack.gateway.log_path
    eventually(lambda: '"pods": ["pod-1", "pod-2", "pod-3"]' in gateway_log.read_text())
    sid = next(s for s in (f"pause-{i}" for i in range(60)) if HashRing(PODS).owner(s) == "pod-1")
    paused = stack.pods["pod-1"]
    base = stack.gateway_url.replace("http", "ws")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/ws/{sid}?user=u") as ws:
        await ws.send_str("first tokens=3")
        assert "".join((await frames_through_done(ws))[1:-1]) == expected(3)
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            await ws.send_str("second tokens=3")
            # Keepalive would notice the paused pod after ~30 s; the gateway must not wait.
            frames = await asyncio.wait_for(frames_through_done(ws), 15)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
    assert frames[0] == "[LOADING]" and "".join(frames[1:-1]) == expected(3)
