"""Attachments (docs/attachments.md) over real gRPC and HTTP with AUTH_MODE=jwt and two pods:
a 50 MB file round-trips byte-exact, types are sniffed, limits refuse and keep nothing, only
readers of a session that refers to a file can download it, and exports carry references."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from durablechat.v1 import (
    access_pb2,
    attachments_pb2,
    attachments_pb2_grpc,
    branches_pb2,
    common_pb2,
    export_pb2,
    session_pb2,
)
from tests.support.secure import SecureStack, User, room_id, secure_stack, status_of
from tests.support.user_calls import export

LIMIT = 52 * 1024 * 1024
BIG = 50 * 1000 * 1000
MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(100)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    pod_env = {"MAX_ATTACHMENT_BYTES": str(LIMIT), "RATE_USER_PER_MIN": "0"}
    gateway_env = {"MAX_ATTACHMENT_BYTES": str(MIB)}  # the gateway's own, declared-length check
    with secure_stack(
        tmp_path_factory.mktemp("attachments"), pod_env, gateway_env=gateway_env
    ) as running:
        yield running


def stub(secure: SecureStack, pod: str = "pod-a") -> Any:
    channel = grpc.aio.insecure_channel(secure.stack.pod_addrs[pod])
    return channel, attachments_pb2_grpc.AttachmentServiceStub(channel)


async def upload(secure: SecureStack, user: User, name: str, data: bytes, chunk: int = MIB) -> Any:
    async def chunks() -> AsyncIterator[attachments_pb2.UploadAttachmentRequest]:
        for start in range(0, max(len(data), 1), chunk):
            piece = data[start : start + chunk]
            yield attachments_pb2.UploadAttachmentRequest(
                filename=name if start == 0 else "", data=piece
            )

    channel, attachments = stub(secure)
    async with channel:
        reply = await attachments.UploadAttachment(chunks(), metadata=user.metadata, timeout=60)
    return reply.attachment


async def download(secure: SecureStack, user: User, sid: str, sha: str) -> tuple[Any, bytes]:
    channel, attachments = stub(secure, "pod-b")  # (not necessarily the owner's pod)
    async with channel:
        call = attachments.DownloadAttachment(
            attachments_pb2.DownloadAttachmentRequest(session_id=sid, sha256=sha),
            metadata=user.metadata,
            timeout=60,
        )
        meta, data = None, bytearray()
        async for reply in call:
            if reply.HasField("attachment"):
                meta = reply.attachment
            data += reply.data
    return meta, bytes(data)


async def attach(user: User, sid: str, sha: str, name: str = "") -> Any:
    request = session_pb2.AppendMessageRequest(
        session_id=sid,
        role=common_pb2.ROLE_USER,
        content="see the file",
        attachments=[common_pb2.AttachmentRef(sha256=sha, filename=name)],
    )
    return (await user.call("AppendMessage", request)).message


async def test_a_50_mb_file_round_trips_byte_exact(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann, bob = people["ann"], people["bob"]
    data = os.urandom(BIG)
    stored = await upload(secure, ann, "big.bin", data)
    assert (stored.sha256, stored.size) == (hashlib.sha256(data).hexdigest(), BIG)
    assert stored.mime_type == "application/octet-stream"
    sid = room_id()
    message = await attach(ann, sid, stored.sha256, "big.bin")
    assert [(a.sha256, a.filename, a.size) for a in message.attachments] == [
        (stored.sha256, "big.bin", BIG)
    ]
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_VIEWER)
    meta, got = await download(secure, bob, sid, stored.sha256)
    assert got == data
    assert meta.filename == "big.bin" and meta.size == BIG


async def test_types_are_sniffed_from_bytes_and_the_same_bytes_are_kept_once(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    png = await upload(secure, ann, "photo.txt", PNG)
    text = await upload(secure, ann, "notes.png", "plain words, ünïcode\n".encode())
    pdf = await upload(secure, ann, "x", b"%PDF-1.7\n" + os.urandom(50))
    assert (png.mime_type, text.mime_type, pdf.mime_type) == (
        "image/png",
        "text/plain",
        "application/pdf",
    )
    again = await upload(secure, ann, "copy.png", PNG, chunk=7)
    assert again.sha256 == png.sha256
    assert stored_bytes(secure.stack.workdir, png.sha256) == PNG


async def test_limits_and_bad_uploads_are_refused_and_keep_nothing(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    cases = [
        ("too big", "big.bin", b"\0" * (LIMIT + 1), MIB),
        ("chunk too big", "c.bin", b"\0" * (MIB + 1), MIB + 1),
        ("no name", "", b"abc", MIB),
        ("path in name", "../etc/passwd", b"abc", MIB),
    ]
    for why, name, data, chunk in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await upload(secure, ann, name, data, chunk)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, why
    tmp = secure.stack.workdir / "attachments" / "tmp"
    assert not any(tmp.iterdir())
    sha = hashlib.sha256(b"\0" * (LIMIT + 1)).hexdigest()
    assert not (secure.stack.workdir / "attachments" / sha[:2] / sha).exists()


async def test_only_readers_of_a_session_that_refers_to_a_file_can_get_it(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann, bob = people["ann"], people["bob"]
    stored = await upload(secure, ann, "secret.txt", b"ann's secret")
    sid = room_id()
    await attach(ann, sid, stored.sha256)
    get = attachments_pb2.GetAttachmentRequest(session_id=sid, sha256=stored.sha256)
    assert await status_of(bob, "GetAttachment", get) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await download(secure, bob, sid, stored.sha256)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    # Knowing the hash does not let bob attach ann's file to a session of his own.
    own = room_id()
    await bob.post(own, "mine")
    request = session_pb2.AppendMessageRequest(
        session_id=own,
        role=common_pb2.ROLE_USER,
        content="stolen",
        attachments=[common_pb2.AttachmentRef(sha256=stored.sha256, filename="x")],
    )
    assert await status_of(bob, "AppendMessage", request) == grpc.StatusCode.INVALID_ARGUMENT
    unreferenced = attachments_pb2.GetAttachmentRequest(session_id=sid, sha256="0" * 64)
    assert await status_of(ann, "GetAttachment", unreferenced) == grpc.StatusCode.NOT_FOUND


async def test_attachments_over_http_and_in_exports(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    sid = room_id()
    headers = {"Authorization": f"Bearer {ann.token}"}
    base = secure.stack.gateway_url
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/api/attachments?filename=pic.png", data=PNG) as response:
            assert response.status == 201
            stored = await response.json()
        assert stored["mimeType"] == "image/png" and stored["size"] == len(PNG)
        body = {
            "role": "user",
            "content": "a picture",
            "attachments": [{"sha256": stored["sha256"], "filename": "pic.png"}],
        }
        async with http.post(f"{base}/api/chat/session/{sid}/messages", json=body) as response:
            assert response.status == 201
            message = await response.json()
        assert message["attachments"][0]["sha256"] == stored["sha256"]
        url = f"{base}/api/chat/session/{sid}/attachments/{stored['sha256']}"
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/png"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "attachment" in response.headers["Content-Disposition"]
            assert await response.read() == PNG
        too_big = io.BytesIO(b"\0" * (MIB + 1))
        async with http.post(f"{base}/api/attachments?filename=x", data=too_big) as response:
            assert response.status == 413
    lines, _ = await export(ann, sid)
    refs = [json.loads(line).get("attachments") for line in lines[1:]]
    assert refs[-1] == [
        {
            "sha256": stored["sha256"],
            "filename": "pic.png",
            "mimeType": "image/png",
            "size": len(PNG),
        }
    ]
    copy = await ann.call("ImportSession", export_pb2.ImportSessionRequest(jsonl="\n".join(lines)))
    _, data = await download(secure, ann, copy.session_id, stored["sha256"])
    assert data == PNG


def stored_bytes(workdir: Path, sha: str) -> bytes:
    return (workdir / "attachments" / sha[:2] / sha).read_bytes()


async def test_imports_and_forks_refer_only_to_files_the_caller_may_attach(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann, bob, vic = people["ann"], people["bob"], people["vic"]
    stored = await upload(secure, ann, "plan.png", PNG)
    sid = room_id()
    message = await attach(ann, sid, stored.sha256, "plan.png")
    lines, _ = await export(ann, sid)
    forged = [
        lines[0],
        json.dumps(
            {
                "n": 1,
                "type": "message",
                "role": "user",
                "content": "mine now",
                "user": vic.name,
                "time": 1,
                "attachments": [
                    {
                        "sha256": stored.sha256,
                        "filename": "x.html",
                        "mimeType": "text/html",
                        "size": 1,
                    }
                ],
            }
        ),
    ]
    refused = export_pb2.ImportSessionRequest(jsonl="\n".join(forged))
    assert await status_of(vic, "ImportSession", refused) == grpc.StatusCode.INVALID_ARGUMENT
    # ann may: and the stored type and size win over the file's.
    mine = await ann.call("ImportSession", refused)
    meta, data = await download(secure, ann, mine.session_id, stored.sha256)
    assert (meta.mime_type, meta.size, data) == ("image/png", len(PNG), PNG)
    # A reader who forks the branch may refer to its files in the copy.
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_VIEWER)
    fork = await bob.call(
        "ForkSession", branches_pb2.ForkSessionRequest(session_id=sid, at_seq=message.seq)
    )
    _, data = await download(secure, bob, fork.session_id, stored.sha256)
    assert data == PNG
