"""Bench scenarios over gRPC (g): the prompt round trip and the fan-out straight to the pod, and
the fan-out over gRPC-web through Envoy.

Subscribers straight to the pod are served by the owner itself, so its cost per token grows with
them; through Envoy, Subscribe is served by the gateway's gRPC fan-out (gateway/fanout_server.py)
from one owner stream, as WebSockets are. The two figures side by side show what it saves.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import grpc

from bench.stats import round_trips
from bench.target import Target
from bench.ws_load import Followed, expected_text, measure_answer
from durablechat.v1 import session_pb2, session_pb2_grpc

TIMEOUT_S = 60

Stream = Any
"""A Subscribe call (grpc.aio's stub typing has no usable name for it)."""


async def caught_up(stub: session_pb2_grpc.SessionServiceStub, sid: str) -> Stream:
    """A Subscribe stream from "now", read up to its CaughtUp."""
    stream: Stream = stub.Subscribe(session_pb2.SubscribeRequest(session_id=sid))
    async for reply in stream:
        if reply.event.WhichOneof("kind") == "caught_up":
            return stream
    raise RuntimeError(f"subscription to {sid} ended before it caught up")


async def follow(stream: Stream, answer_seq: Callable[[], int] | int) -> Followed:
    """Reads the stream until the AnswerEnded of the answer `answer_seq` (or its call) names."""
    seen = Followed()
    parts: list[str] = []
    async for reply in stream:
        event = reply.event
        kind = event.WhichOneof("kind")
        if kind == "answer_delta":
            if not parts:
                seen.first_text_at = time.monotonic()
            parts.append(event.answer_delta.text)
        elif kind == "answer_ended" and event.answer_ended.message.answer_seq == (
            answer_seq() if callable(answer_seq) else answer_seq
        ):
            seen.done_at = time.monotonic()
            if event.answer_ended.error:
                seen.error = event.answer_ended.error
            break
    else:
        seen.error = "stream ended"
    seen.text = "".join(parts)
    return seen


class GrpcWebError(Exception):
    """A gRPC-web call that ended with a status other than OK."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{grpc_code(code).name}: {message}")
        self.code = grpc_code(code)
        self.message = message


def grpc_code(number: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)


def _check(fields: Any) -> None:
    status = fields.get("grpc-status")
    if status not in (None, "0"):
        raise GrpcWebError(int(status), urllib.parse.unquote(fields.get("grpc-message", "")))


async def grpc_web_stream(
    http: aiohttp.ClientSession,
    url: str,
    method: str,
    request: bytes,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """A server stream over gRPC-web (as the page's connect-web transport speaks it, binary):
    yields each message's bytes; raises GrpcWebError for a status other than OK."""
    body = b"\x00" + len(request).to_bytes(4, "big") + request
    sent = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "accept": "application/grpc-web+proto",
        **(headers or {}),
    }
    async with http.post(f"{url}/{method}", data=body, headers=sent) as reply:
        _check(reply.headers)  # a trailers-only answer
        buffer = b""
        async for chunk in reply.content.iter_any():
            buffer += chunk
            while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
                flag, size = buffer[0], int.from_bytes(buffer[1:5], "big")
                payload, buffer = buffer[5 : 5 + size], buffer[5 + size :]
                if flag & 0x80:  # the trailers frame: "name: value" lines
                    pairs = [line.split(":", 1) for line in payload.decode().split("\r\n")]
                    _check({p[0].strip().lower(): p[1].strip() for p in pairs if len(p) == 2})
                    return
                yield payload


def prompt(sid: str, text: str) -> session_pb2.SendPromptRequest:
    return session_pb2.SendPromptRequest(session_id=sid, content=text, user="bench")


async def prompt_round_trips(
    target: Target, concurrency: int, seconds: float, run: str
) -> dict[str, Any]:
    """a) over gRPC: SendPrompt(`tokens=1`) → its AnswerEnded on an open Subscribe."""
    async with grpc.aio.insecure_channel(target.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        samples: list[float] = []
        incomplete = 0
        deadline = time.monotonic() + seconds

        async def worker(i: int) -> None:
            nonlocal incomplete
            sid = f"{run}-grt{concurrency}-{i}"
            stream = await caught_up(stub, sid)
            try:
                while time.monotonic() < deadline:
                    sent = time.monotonic()
                    reply = await stub.SendPrompt(prompt(sid, "tokens=1"), timeout=TIMEOUT_S)
                    seen = await follow(stream, reply.answer_seq)
                    incomplete += bool(seen.error or seen.text != expected_text(1))
                    samples.append(time.monotonic() - sent)
            finally:
                stream.cancel()

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    return round_trips(concurrency, samples, elapsed, incomplete)


async def fan_out(target: Target, subscribers: int, tokens: int, run: str) -> dict[str, Any]:
    """c) over gRPC: `subscribers` Subscribe streams on one session follow one answer."""
    sid = f"{run}-gfan{subscribers}"
    async with grpc.aio.insecure_channel(target.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        gate = asyncio.Semaphore(100)

        async def subscribe() -> Stream:
            async with gate:
                return await caught_up(stub, sid)

        streams = await asyncio.gather(*(subscribe() for _ in range(subscribers)))
        answer_seq = 0

        async def send() -> None:
            nonlocal answer_seq
            reply = await stub.SendPrompt(prompt(sid, f"tokens={tokens}"), timeout=TIMEOUT_S)
            answer_seq = reply.answer_seq

        try:
            return await measure_answer(
                target,
                tokens,
                subscribers,
                [follow(s, lambda: answer_seq) for s in streams],
                send,
            )
        finally:
            for stream in streams:
                stream.cancel()


WEB_FAN_OUT = (1, 1000, 5000)
WEB_FAN_OUT_QUICK = (1, 10)
"""gRPC-web subscribers through Envoy for g) (full run, --quick)."""
PER_ADDRESS = 500
"""Subscribers per client address: Envoy lets one address open 1,200 gRPC calls a minute (its
per-IP limit, deploy/envoy/envoy.yaml), so the load comes from 127.0.0.2, 127.0.0.3, ... as
that many browsers would; each run takes addresses no earlier run used."""
_addresses = itertools.count()


def _client_address() -> str:
    k = next(_addresses)
    return f"127.0.{1 + k // 250}.{1 + k % 250}"


async def _web_replies(
    http: aiohttp.ClientSession, envoy_url: str, sid: str
) -> AsyncIterator[session_pb2.SubscribeResponse]:
    request = session_pb2.SubscribeRequest(session_id=sid).SerializeToString()
    method = "durablechat.v1.SessionService/Subscribe"
    async for data in grpc_web_stream(http, envoy_url, method, request):
        yield session_pb2.SubscribeResponse.FromString(data)


async def _web_caught_up(
    http: aiohttp.ClientSession, envoy_url: str, sid: str
) -> AsyncIterator[session_pb2.SubscribeResponse]:
    """A gRPC-web Subscribe from "now", read up to its CaughtUp."""
    replies = _web_replies(http, envoy_url, sid)
    async for reply in replies:
        if reply.event.WhichOneof("kind") == "caught_up":
            return replies
    raise RuntimeError(f"subscription to {sid} ended before it caught up")


async def fan_out_grpc_web(
    target: Target, envoy_url: str, subscribers: int, tokens: int, run: str
) -> dict[str, Any]:
    """g) over gRPC-web through Envoy: `subscribers` Subscribe streams (the web page's path) on
    one session follow one answer; Envoy routes them to the gateway's fan-out."""
    sid = f"{run}-gwebfan{subscribers}"
    addresses = -(-subscribers // PER_ADDRESS)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(_client_address(), 0)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
        for _ in range(addresses)
    ]
    gate = asyncio.Semaphore(100)

    async def subscribe(i: int) -> AsyncIterator[session_pb2.SubscribeResponse]:
        async with gate:
            return await _web_caught_up(sessions[i // PER_ADDRESS], envoy_url, sid)

    try:
        streams = await asyncio.gather(*(subscribe(i) for i in range(subscribers)))
        async with grpc.aio.insecure_channel(target.session_addr) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            answer_seq = 0
            canary = await caught_up(stub, sid)
            owner_sent: list[float | None] = []

            async def owner_done() -> Followed:
                """A stream on the pod itself: its end is when the owner has sent the answer."""
                seen = await follow(canary, lambda: answer_seq)
                owner_sent.append(target.cpu_seconds("session"))
                return seen

            async def send() -> None:
                nonlocal answer_seq
                reply = await stub.SendPrompt(prompt(sid, f"tokens={tokens}"), timeout=TIMEOUT_S)
                answer_seq = reply.answer_seq

            done = asyncio.ensure_future(owner_done())
            before = target.cpu_seconds("session")
            result = await measure_answer(
                target, tokens, subscribers, [follow(s, lambda: answer_seq) for s in streams], send
            )
            await done
            canary.cancel()
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
        if before is not None and owner_sent and owner_sent[0] is not None:
            # The owner's part ends when it has sent the answer; what follows while the gateway
            # still delivers is the pod idling (lease renewals, heartbeats), not fan-out work.
            spent = (owner_sent[0] - before) / tokens * 1e6
            result["owner_cpu_us_per_token_until_sent"] = round(spent, 1)
        return {"path": "gRPC-web through Envoy (gateway fan-out) + 1 canary on the pod", **result}
    finally:
        for session in sessions:
            await session.close()
