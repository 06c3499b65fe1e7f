"""Envoy's own limits (deploy/envoy/envoy.yaml), with a real Envoy in front of a stack with
AUTH_MODE=jwt: a per-client-IP limit on gRPC and gRPC-web (which go straight to the pods, past
the gateway's per-IP limit) and a timeout on reading a request's head. The limit is rendered
small here (deploy/envoy_config.py); everything else is the committed file."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator

import aiohttp
import grpc
import pytest

from durablechat.v1 import session_pb2, session_pb2_grpc
from tests.support.edge import Edge, running_edge

LIMIT = 8
"""gRPC calls per client IP per minute, as rendered for this module."""
HEADERS_TIMEOUT_S = 2
METHOD = "/durablechat.v1.SessionService/GetSession"
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(
        tmp_path_factory.mktemp("edge-limits"),
        secure=True,
        grpc_calls_per_ip_min=LIMIT,
        request_headers_timeout_s=HEADERS_TIMEOUT_S,
    ) as running:
        yield running


def grpc_web_status(headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """(grpc-status, grpc-message) of a gRPC-web reply: in its headers (trailers-only) or in
    its trailer frame (flag 0x80)."""
    if "grpc-status" in headers:
        return int(headers["grpc-status"]), headers.get("grpc-message", "")
    at = 0
    while at + 5 <= len(body):
        flag, size = body[at], struct.unpack(">I", body[at + 1 : at + 5])[0]
        frame = body[at + 5 : at + 5 + size]
        if flag & 0x80:
            fields = dict(
                line.split(":", 1) for line in frame.decode().split("\r\n") if ":" in line
            )
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            return int(fields["grpc-status"]), fields.get("grpc-message", "")
        at += 5 + size
    raise AssertionError(f"no grpc-status in the reply: {headers} {body!r}")


async def grpc_web_call(edge: Edge, token: str, source: str = "127.0.0.1") -> tuple[int, int, str]:
    """One gRPC-web GetSession through Envoy from `source` (a loopback address): (HTTP status,
    grpc-status, grpc-message)."""
    message = session_pb2.GetSessionRequest(session_id="edge-flood").SerializeToString()
    body = b"\x00" + struct.pack(">I", len(message)) + message
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "authorization": f"Bearer {token}",
    }
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"{edge.url}{METHOD}", data=body, headers=headers) as response,
    ):
        reply_headers = {k.lower(): v for k, v in response.headers.items()}
        return (response.status, *grpc_web_status(reply_headers, await response.read()))


async def test_grpc_web_flood_through_envoy_is_rate_limited_per_ip(edge: Edge) -> None:
    """Attack: one client floods the pods with gRPC-web (or gRPC) calls through Envoy, where
    only the gateway's HTTP routes were limited per IP."""
    token = edge.token("edge-flooder")
    refused: tuple[int, int, str] | None = None
    served = 0
    for _ in range(LIMIT + 1):
        reply = await grpc_web_call(edge, token)
        if reply[1] == RESOURCE_EXHAUSTED:
            refused = reply
            break
        served += 1
    # As gRPC-web wants it: HTTP 200, grpc-status 8 (not UNAVAILABLE: do not retry at once).
    assert refused == (200, RESOURCE_EXHAUSTED, "too many calls from this address"), refused
    assert served == LIMIT
    # Native gRPC from the same address shares the bucket.
    address = edge.url.removeprefix("http://")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as native:
            await stub.GetSession(
                session_pb2.GetSessionRequest(session_id="edge-flood"),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        assert native.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another client address has its own bucket; the gateway's routes are not Envoy's to limit.
    http_status, status, _ = await grpc_web_call(
        edge, edge.token("edge-neighbour"), source="127.0.0.2"
    )
    assert http_status == 200 and status != RESOURCE_EXHAUSTED
    async with aiohttp.ClientSession() as http, http.get(f"{edge.url}/healthz") as response:
        assert response.status == 200


async def test_envoy_cuts_slow_headers(edge: Edge) -> None:
    """Attack: slowloris: a client sends a request head slowly (or never finishes it) to hold
    a connection for as long as it likes."""
    host, port = edge.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge.test\r\nX-Slow: 1")
        await writer.drain()
        # Envoy answers 408 and closes; without the timeout it would wait for the rest.
        reply = await asyncio.wait_for(reader.read(), timeout=HEADERS_TIMEOUT_S + 10)
        took = time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert took < HEADERS_TIMEOUT_S + 5
