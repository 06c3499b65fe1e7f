"""Reads that could grow the gateway without bound, with AUTH_MODE=jwt and small limits: history
replies, a client that never reads its socket, event-stream floods, request heads that never
end. Each test names the attack it stops (docs/bounded-reads.md)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest

from deploy.stack.waits import async_eventually, eventually
from durablechat.v1 import access_pb2, common_pb2, session_pb2, session_pb2_grpc
from gateway.config import HISTORY_FRAME_SLACK_BYTES
from tests.support.secure import SecureStack, room_id, secure_stack

HISTORY_BYTES = 256 * 1024
SEND_QUEUE_BYTES = 512 * 1024
STREAMS = 2
HEADER_TIMEOUT_MS = 1000
STALL_TIMEOUT_MS = 3000
"""Longer than the flood test needs to see its socket dropped for its send queue (1013)."""
LONG_MESSAGES = 8
MESSAGE_CHARS = 60_000
"""Eight messages of 60,000 characters: four fit in HISTORY_BYTES, four are omitted."""
SHOWN = 4
FLOOD_REQUESTS = 400
"""Without a byte bound the gateway would queue about 400 x 240 kB for the flooding socket."""
RSS_GROWTH_LIMIT_KB = 32 * 1024


@dataclass(frozen=True)
class LongHistory:
    room: str
    seqs: list[int]
    contents: list[str]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    gateway = {
        "MAX_HISTORY_REPLY_BYTES": str(HISTORY_BYTES),
        "WS_SEND_QUEUE_BYTES": str(SEND_QUEUE_BYTES),
        "MAX_STREAMS_PER_USER": str(STREAMS),
        "HEADER_READ_TIMEOUT_MS": str(HEADER_TIMEOUT_MS),
        "SEND_STALL_TIMEOUT_MS": str(STALL_TIMEOUT_MS),
        "SSE_HEARTBEAT_MS": "200",  # a stream whose client left ends (and frees its slot) soon
    }
    with secure_stack(tmp_path_factory.mktemp("reads"), gateway_env=gateway) as running:
        yield running


@pytest.fixture(scope="module")
def history(secure: SecureStack) -> LongHistory:
    """A room of `historian` with LONG_MESSAGES messages of MESSAGE_CHARS characters each."""
    room = room_id()
    metadata = (("authorization", f"Bearer {secure.token('historian')}"),)
    contents = [f"{i}" + "x" * (MESSAGE_CHARS - 1) for i in range(LONG_MESSAGES)]
    with grpc.insecure_channel(secure.stack.pod_addrs["pod-a"]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        stub.CreateRoom(access_pb2.CreateRoomRequest(session_id=room), metadata=metadata)
        seqs = []
        for content in contents:
            request = session_pb2.AppendMessageRequest(
                session_id=room, role=common_pb2.ROLE_USER, content=content
            )
            reply = stub.AppendMessage(request, metadata=metadata, timeout=15)
            seqs.append(reply.message.seq)
    return LongHistory(room, seqs, contents)


def auth(secure: SecureStack, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secure.token(user)}"}


def ws_url(secure: SecureStack, room: str) -> str:
    return f"{secure.stack.gateway_url.replace('http', 'ws')}/ws/{room}"


def protocols(secure: SecureStack, user: str) -> tuple[str, str]:
    return ("durablechat", f"bearer.{secure.token(user)}")


async def test_rest_history_reply_is_capped(secure: SecureStack, history: LongHistory) -> None:
    """Attack: a session's whole history built into one reply (the gateway's memory and the
    reply grow with the log). The answer holds the newest messages that fit and says how many
    older ones to page; paging still reads every message."""
    api = f"{secure.stack.gateway_url}/api/chat/session/{history.room}"
    headers = auth(secure, "historian")
    async with aiohttp.ClientSession() as http:
        async with http.get(api, headers=headers) as response:
            assert response.status == 200, await response.text()
            raw = await response.read()
        body = json.loads(raw)
        assert len(raw) <= HISTORY_BYTES + HISTORY_FRAME_SLACK_BYTES
        shown = history.seqs[-SHOWN:]
        assert [m["seq"] for m in body["messages"]] == shown
        assert [m["content"] for m in body["messages"]] == history.contents[-SHOWN:]
        assert body["olderMessages"] == {"omitted": LONG_MESSAGES - SHOWN, "beforeSeq": shown[0]}
        assert body["createdAt"] > 0

        paged = []  # the older messages stay readable, a page at a time
        after = 0
        while True:
            params = {"after": str(after), "limit": "3"}
            async with http.get(f"{api}/messages", params=params, headers=headers) as response:
                page = await response.json()
            paged += [m["seq"] for m in page["messages"]]
            if not page["hasMore"]:
                break
            after = page["messages"][-1]["seq"]
        assert paged == history.seqs

        # A history that fits is answered whole, without the marker (the seed contract).
        small = room_id()
        post = {"role": "user", "content": "hello"}
        small_api = f"{secure.stack.gateway_url}/api/chat/session/{small}"
        async with http.post(f"{small_api}/messages", json=post, headers=headers) as response:
            assert response.status == 201
        async with http.get(small_api, headers=headers) as response:
            whole = await response.json()
        assert [m["content"] for m in whole["messages"]] == ["hello"]
        assert "olderMessages" not in whole

        # The marker's name is reserved: a state cannot fake it.
        async with http.put(small_api, json={"olderMessages": 1}, headers=headers) as response:
            assert response.status == 400
            assert "reserved" in (await response.json())["error"]["message"]


async def test_ws_history_reply_is_capped(secure: SecureStack, history: LongHistory) -> None:
    """Attack: `(GET_HISTORY)` of a long thread as one unbounded frame. The frame holds the
    newest messages that fit, led by a notice of how many older ones to page."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            ws_url(secure, history.room), protocols=protocols(secure, "historian")
        ) as ws,
    ):
        await ws.send_str("(GET_HISTORY)")
        frame = await ws.receive_str(timeout=30)
    assert len(frame.encode()) <= HISTORY_BYTES + HISTORY_FRAME_SLACK_BYTES
    entries = json.loads(frame)
    notice, messages = entries[0], entries[1:]
    assert notice["role"] == "notice" and "MAX_HISTORY_REPLY_BYTES" in notice["content"]
    assert notice["omitted"] == LONG_MESSAGES - SHOWN
    assert notice["beforeSeq"] == history.seqs[-SHOWN]
    assert [m["content"] for m in messages] == history.contents[-SHOWN:]
    assert {m["role"] for m in messages} == {"user"}


def vm_kb(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in kB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked WebSocket frame from a client (text by default)."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    else:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def tiny_reader(secure: SecureStack) -> socket.socket:
    """A TCP connection to the gateway with a tiny receive buffer."""
    host, port = secure.stack.gateway_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect((host, int(port)))
    return sock


def open_raw_socket(secure: SecureStack, room: str, user: str) -> socket.socket:
    """A WebSocket upgraded over a plain TCP socket with a tiny receive buffer; the caller
    reads nothing after the 101 head."""
    host, port = secure.stack.gateway_url.removeprefix("http://").split(":")
    sock = tiny_reader(secure)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/{room} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: durablechat, bearer.{secure.token(user)}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing after the head is read
        assert chunk, "the gateway closed the upgrade"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def aborted(sock: socket.socket) -> bool:
    """Whether the gateway let go of the connection, found without reading or sending: no
    socket of the gateway's end is held by a process any more (/proc/net/tcp lists it with
    inode 0, or not at all). A kernel may still try to deliver the unsent bytes of a closed
    socket; they are no longer the gateway's memory."""
    ours = sock.getsockname()[1]
    theirs = sock.getpeername()[1]
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if (local_port, remote_port) == (theirs, ours):
                return fields[9] == "0"
    return True


def dropped_sockets(secure: SecureStack) -> float:
    with urllib.request.urlopen(f"{secure.stack.gateway_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(r"^dc_gateway_dropped_sockets_total (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


async def test_non_reading_client_history_flood_keeps_gateway_rss_bounded(
    secure: SecureStack, history: LongHistory
) -> None:
    """Attack: a client asks for a long history again and again and never reads its socket,
    so every reply would wait in the gateway's memory. Its send queue is bounded in bytes
    (WS_SEND_QUEUE_BYTES): the socket is closed (1013, then cut: its client does not read),
    the gateway's RSS stays flat, and other clients are served throughout."""
    assert secure.stack.gateway is not None
    pid = secure.stack.gateway.pid
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            ws_url(secure, history.room), protocols=protocols(secure, "historian")
        ) as bystander,
    ):
        await bystander.send_str("(GET_HISTORY)")  # warms the gateway's history path up
        assert len(json.loads(await bystander.receive_str(timeout=30))) == SHOWN + 1
        dropped_before = dropped_sockets(secure)
        rss_before, peak_before = vm_kb(pid, "VmRSS"), vm_kb(pid, "VmHWM")

        flooder = open_raw_socket(secure, history.room, "historian")
        try:
            flooder.sendall(client_frame(b"(GET_HISTORY)") * FLOOD_REQUESTS)
            rss_seen = [rss_before]

            def cut_off() -> bool:
                rss_seen.append(vm_kb(pid, "VmRSS"))
                return aborted(flooder)

            try:
                eventually(cut_off, timeout=60, interval=0.2)
                cut = True
            except AssertionError:
                cut = False
        finally:
            flooder.close()
        grown_kb = max(rss_seen) - rss_before
        peak_grown_kb = vm_kb(pid, "VmHWM") - peak_before
        assert grown_kb < RSS_GROWTH_LIMIT_KB, f"RSS grew {grown_kb} kB"
        assert peak_grown_kb < RSS_GROWTH_LIMIT_KB, f"peak RSS grew {peak_grown_kb} kB"
        assert cut, "the non-reading socket was still open after 60 s"
        assert dropped_sockets(secure) > dropped_before  # closed for its send queue (1013)

        # The other socket on the same thread, and REST, are served as before.
        await bystander.send_str("(GET_HISTORY)")
        assert len(json.loads(await bystander.receive_str(timeout=30))) == SHOWN + 1
        api = f"{secure.stack.gateway_url}/api/chat/session/{history.room}"
        async with http.get(api, headers=auth(secure, "historian")) as response:
            assert response.status == 200


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the gateway closed the connection without a close frame"
        data += chunk
    return data


def server_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next (unmasked, unfragmented) frame from the gateway: opcode and payload."""
    first, second = read_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(read_exactly(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exactly(sock, 8), "big")
    return first & 0x0F, read_exactly(sock, length)


def test_slow_reading_client_is_closed_with_try_again_later(
    secure: SecureStack, history: LongHistory
) -> None:
    """Attack: a client that asks for history faster than it reads. Past WS_SEND_QUEUE_BYTES
    its queued replies are dropped and, once it reads again, it gets the frame that was being
    written and then a 1013 close (try again later: reconnect and resume)."""
    dropped_before = dropped_sockets(secure)
    with open_raw_socket(secure, history.room, "historian") as slow:
        slow.sendall(client_frame(b"(GET_HISTORY)") * FLOOD_REQUESTS)
        eventually(lambda: dropped_sockets(secure) > dropped_before, timeout=30, interval=0.05)
        kinds = []
        while (frame := server_frame(slow))[0] != 0x8:  # reads until the close frame
            kinds.append(frame[0])
        code = int.from_bytes(frame[1][:2], "big")
    assert code == 1013, frame[1]
    assert set(kinds) <= {0x1, 0x9}  # history frames (and pings), nothing after the close


def test_non_reading_rest_client_is_cut_after_send_stall(
    secure: SecureStack, history: LongHistory
) -> None:
    """Attack: pipelined requests for a long history on a connection whose client never reads,
    so each reply waits in the gateway (aiohttp has no send timeout: for ever). Once the client
    has read nothing for SEND_STALL_TIMEOUT_MS the connection is aborted."""
    host, port = secure.stack.gateway_url.removeprefix("http://").split(":")
    request = (
        f"GET /api/chat/session/{history.room} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {secure.token('historian')}\r\n\r\n"
    ).encode()
    with tiny_reader(secure) as reader:
        started = time.monotonic()
        reader.sendall(request * 24)  # about 5.8 MB of replies, more than a kernel buffers

        eventually(lambda: aborted(reader), timeout=60, interval=0.2)
        elapsed = time.monotonic() - started
    assert 0.8 * STALL_TIMEOUT_MS / 1000 <= elapsed < 20, elapsed


async def test_sse_stream_flood_stops_at_user_limit(secure: SecureStack) -> None:
    """Attack: one user opens event streams without end (each holds an upstream subscription).
    One more than MAX_STREAMS_PER_USER is 429 naming the setting; other users are unaffected;
    a closed stream frees its slot."""
    mine, theirs = room_id(), room_id()
    gateway = secure.stack.gateway_url
    async with aiohttp.ClientSession() as http:
        for room, user in ((mine, "streamer"), (theirs, "neighbour")):
            post = {"role": "user", "content": "hello"}
            url = f"{gateway}/api/chat/session/{room}/messages"
            async with http.post(url, json=post, headers=auth(secure, user)) as response:
                assert response.status == 201

        async def stream(room: str, user: str) -> aiohttp.ClientResponse:
            url = f"{gateway}/api/chat/session/{room}/events?after=0"
            return await http.get(url, headers=auth(secure, user))

        held = [await stream(mine, "streamer") for _ in range(STREAMS)]
        assert [r.status for r in held] == [200] * STREAMS
        refused = await stream(mine, "streamer")
        assert refused.status == 429
        error = (await refused.json())["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert "MAX_STREAMS_PER_USER" in error["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        refused.release()

        other = await stream(theirs, "neighbour")  # another user still gets a stream
        assert other.status == 200
        other.close()

        held.pop().close()

        async def reopened() -> aiohttp.ClientResponse:
            response = await stream(mine, "streamer")
            if response.status != 200:
                response.release()
                raise AssertionError(f"still refused: {response.status}")
            return response

        held.append(await async_eventually(reopened, within=10, interval=0.1))
        for response in held:
            response.close()


def closed_after(sock: socket.socket, started: float, trickle: bytes, deadline_s: float) -> float:
    """Sends `trickle` (if any) every 100 ms until the server closes the connection; the seconds
    from `started` to the close. Fails if it is still open after `deadline_s`."""
    while time.monotonic() - started < deadline_s:
        if trickle:
            sock.send(trickle)
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", f"the server answered: {data[:200]!r}"
            return time.monotonic() - started
    raise AssertionError(f"still open after {deadline_s} s")


def test_slowloris_headers_are_cut(secure: SecureStack) -> None:
    """Attack: connections that trickle their request headers (or send nothing) to hold the
    gateway's connections for ever. Each is closed HEADER_READ_TIMEOUT_MS after it opened; a
    kept-alive connection idle between requests is not."""
    host, port = secure.stack.gateway_url.removeprefix("http://").split(":")
    timeout_s = HEADER_TIMEOUT_MS / 1000

    with socket.create_connection((host, int(port)), timeout=15) as slow:
        started = time.monotonic()
        slow.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
        elapsed = closed_after(slow, started, b"X-Slow: 1\r\n", deadline_s=10 * timeout_s)
    assert 0.8 * timeout_s <= elapsed < 8 * timeout_s

    with socket.create_connection((host, int(port)), timeout=15) as silent:
        elapsed = closed_after(silent, time.monotonic(), b"", deadline_s=10 * timeout_s)
    assert 0.8 * timeout_s <= elapsed < 8 * timeout_s

    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=15) as kept:
        for _ in range(2):
            kept.sendall(request)
            assert read_response(kept).startswith(b"HTTP/1.1 200")
            time.sleep(1.5 * timeout_s)  # idle between requests: longer than the head timeout


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed before the response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        body += sock.recv(4096)
    return head
