"""Bench scenarios over the seed WebSocket (through the gateway), one function per scenario.

Every answer a socket follows is checked: a socket whose text differs from the dev model's
answer, or that gets `[ERROR]`, is counted in `incomplete`, so a fast wrong result shows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.credentials import Credentials
from bench.stats import latency_ms, round_trips
from bench.target import Target

DONE = "[DONE]"
LOADING = "[LOADING]"
ERROR = "[ERROR]"
CONNECTS_AT_ONCE = 100
HISTORY_MESSAGES = 1000


def expected_text(tokens: int) -> str:
    """The dev model's answer to a prompt holding `tokens=N`."""
    return " ".join(f"tok{i}" for i in range(tokens))


@dataclass
class Followed:
    """One socket's view of one answer: when its first text and its [DONE] came, and the text."""

    first_text_at: float = 0.0
    done_at: float = 0.0
    text: str = ""
    error: str = ""


async def follow_answer(ws: aiohttp.ClientWebSocketResponse) -> Followed:
    """Reads frames until [DONE]."""
    seen = Followed()
    parts: list[str] = []
    async for frame in ws:
        if frame.type != aiohttp.WSMsgType.TEXT:
            seen.error = f"socket ended: {frame.type.name}"
            break
        data = frame.data
        if data == DONE:
            seen.done_at = time.monotonic()
            break
        if data == LOADING:
            continue
        if data.startswith(ERROR):
            seen.error = data
            continue
        if not parts:
            seen.first_text_at = time.monotonic()
        parts.append(data)
    else:
        seen.error = "socket closed"
    seen.text = "".join(parts)
    return seen


async def connect_many(
    http: aiohttp.ClientSession,
    sockets: list[tuple[str, str]],
    credentials: Credentials,
    tick: Callable[[], None] = lambda: None,
) -> list[aiohttp.ClientWebSocketResponse]:
    """Opens a WebSocket per (url, user), CONNECTS_AT_ONCE at a time, each as its user."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def one(url: str, user: str) -> aiohttp.ClientWebSocketResponse:
        address, protocols = credentials.ws(url, user)
        async with gate:
            ws = await http.ws_connect(address, protocols=protocols, heartbeat=None, max_msg_size=0)
            tick()
            return ws

    return list(await asyncio.gather(*(one(url, user) for url, user in sockets)))


async def close_all(sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def prompt_round_trips(
    target: Target, http: aiohttp.ClientSession, concurrency: int, seconds: float, run: str
) -> dict[str, Any]:
    """a) `tokens=1` prompt sent → [DONE], each worker on its own thread, for `seconds`."""
    base = f"{target.ws_url}/ws/{run}-rt{concurrency}"
    pairs = [(f"{base}-{i}", f"bench-{i}") for i in range(concurrency)]
    sockets = await connect_many(http, pairs, target.credentials)
    samples: list[float] = []
    incomplete = 0
    deadline = time.monotonic() + seconds

    async def worker(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal incomplete
        while time.monotonic() < deadline:
            sent = time.monotonic()
            await ws.send_str("round trip tokens=1")
            seen = await follow_answer(ws)
            if seen.error or seen.text != expected_text(1):
                incomplete += 1
                if not seen.done_at:
                    return
            samples.append(time.monotonic() - sent)

    cpu = target.cpu_all()
    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(ws) for ws in sockets))
    finally:
        await close_all(sockets)
    elapsed = time.monotonic() - started
    return {
        **round_trips(concurrency, samples, elapsed, incomplete),
        **target.cpu_us_per(cpu, len(samples), "round_trip"),
    }


async def history(
    target: Target, http: aiohttp.ClientSession, calls: int, run: str
) -> dict[str, Any]:
    """b) `(GET_HISTORY)` on a thread of HISTORY_MESSAGES messages (appended over REST first)."""
    thread = f"{run}-history"
    url = f"{target.gateway_url}/api/chat/session/{thread}/messages"
    gate = asyncio.Semaphore(20)

    headers = target.credentials.headers("bench")

    async def add(i: int) -> None:
        body = {"role": "user", "content": f"message {i} " + "x" * 80, "clientMessageId": str(i)}
        async with gate, http.post(url, json=body, headers=headers) as reply:
            reply.raise_for_status()

    await add(0)  # the first write claims the thread (AUTH_MODE=jwt): then the rest at once
    await asyncio.gather(*(add(i) for i in range(1, HISTORY_MESSAGES)))
    socket = [(f"{target.ws_url}/ws/{thread}", "bench")]
    (ws,) = await connect_many(http, socket, target.credentials)
    samples: list[float] = []
    size = 0
    try:
        for _ in range(calls):
            sent = time.monotonic()
            await ws.send_str("(GET_HISTORY)")
            frame = await ws.receive()
            samples.append(time.monotonic() - sent)
            size = len(frame.data.encode())
    finally:
        await ws.close()
    return {"messages": HISTORY_MESSAGES, "calls": calls, "bytes": size, **latency_ms(samples)}


async def fan_out(
    target: Target,
    http: aiohttp.ClientSession,
    subscribers: int,
    tokens: int,
    run: str,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """c) one answer of `tokens` tokens, followed by `subscribers` sockets on one thread."""
    thread = f"{run}-fan{subscribers}"
    first = [(f"{target.ws_url}/ws/{thread}", "bench")]
    sockets = await connect_many(http, first, target.credentials, tick)  # claims the thread
    sockets += await connect_many(http, first * (subscribers - 1), target.credentials, tick)
    try:
        return await measure_answer(
            target,
            tokens,
            subscribers,
            [follow_answer(ws) for ws in sockets],
            lambda: sockets[0].send_str(f"fan out tokens={tokens}"),
        )
    finally:
        await close_all(sockets)


async def measure_answer(
    target: Target,
    tokens: int,
    subscribers: int,
    followers: list[Awaitable[Followed]],
    send: Callable[[], Awaitable[Any]],
) -> dict[str, Any]:
    """Starts the followers, sends the prompt, and reports what the answer cost and took."""
    readers = [asyncio.ensure_future(f) for f in followers]
    owner_cpu = target.cpu_seconds("session")
    gateway_cpu = target.cpu_seconds("gateway")
    sent = time.monotonic()
    await send()
    seen = await asyncio.gather(*readers)
    owner_cpu_after = target.cpu_seconds("session")
    gateway_cpu_after = target.cpu_seconds("gateway")
    want = expected_text(tokens)
    good = [s for s in seen if not s.error and s.text == want]
    last_done = max((s.done_at for s in seen if s.done_at), default=sent) - sent
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "tokens": tokens,
        "tokens_per_s_delivered": round(len(good) * tokens / last_done, 1) if last_done else 0,
        "ttft_p50_ms": latency_ms([s.first_text_at - sent for s in good])["p50_ms"],
        "ttft_max_ms": latency_ms([s.first_text_at - sent for s in good])["max_ms"],
        "last_done_ms": round(last_done * 1000, 1),
        "incomplete": len(seen) - len(good),
    }
    if owner_cpu is not None and owner_cpu_after is not None:
        result["owner_cpu_us_per_token"] = round((owner_cpu_after - owner_cpu) / tokens * 1e6, 1)
    if gateway_cpu is not None and gateway_cpu_after is not None:
        delivered = max(1, len(good) * tokens)
        per = (gateway_cpu_after - gateway_cpu) / delivered * 1e6
        result["gateway_cpu_us_per_token_delivered"] = round(per, 2)
    return result


async def idle_sockets(
    target: Target,
    http: aiohttp.ClientSession,
    count: int,
    run: str,
    per_thread: int = 50,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """d) `count` open, idle sockets (`per_thread` to a thread): server memory per socket."""
    before = target.rss_bytes()
    threads = [f"{target.ws_url}/ws/{run}-idle{count}-{t}" for t in range(-(-count // per_thread))]
    sockets = await connect_many(http, [(t, "bench") for t in threads], target.credentials, tick)
    rest = [(threads[i // per_thread], "bench") for i in range(count) if i % per_thread]
    sockets += await connect_many(http, rest, target.credentials, tick)
    try:
        # Every socket's thread is attached before its upgrade completes, so all are counted.
        after = target.rss_bytes()
    finally:
        await close_all(sockets)
    result: dict[str, Any] = {"sockets": count, "threads": -(-count // per_thread)}
    if before is not None and after is not None:
        result["rss_before_mb"] = round(before / 2**20, 1)
        result["rss_after_mb"] = round(after / 2**20, 1)
        result["rss_per_socket_kb"] = round((after - before) / count / 1024, 2)
    return result


async def cold_connects(
    target: Target, http: aiohttp.ClientSession, count: int, run: str
) -> dict[str, Any]:
    """e) a thread nobody used: connect, `tokens=1` prompt, [DONE]; one after another."""
    samples: list[float] = []
    incomplete = 0
    for i in range(count):
        url, protocols = target.credentials.ws(f"{target.ws_url}/ws/{run}-cold-{i}", "bench")
        started = time.monotonic()
        ws = await http.ws_connect(url, protocols=protocols)
        try:
            await ws.send_str("cold tokens=1")
            seen = await follow_answer(ws)
        finally:
            await ws.close()
        samples.append(time.monotonic() - started)
        incomplete += bool(seen.error or seen.text != expected_text(1))
    return {"connects": count, **latency_ms(samples), "incomplete": incomplete}
