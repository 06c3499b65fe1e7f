"""kill -9 of the pod receiving an attachment upload, with six message writers mid-call too
(tests/support/crash.py), AUTH_MODE=jwt:

- mid-stream: the upload fails retryably, nothing of the file is visible (no file at its name,
  not attachable), and the same upload sent again succeeds and reads back byte for byte;
- after its acknowledgement: the restarted pod serves the file byte for byte.

Either way every acknowledged message write is stored once, byte for byte, at its seq."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from common.auth import mint
from deploy.stack.processes import wait_grpc_serving
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from durablechat.v1 import (
    attachments_pb2,
    attachments_pb2_grpc,
    common_pb2,
    session_pb2,
    session_pb2_grpc,
)
from tests.support.crash import (
    KillMoment,
    Writers,
    assert_appends_kept,
    grpc_append_as,
    grpc_retryable,
    kill_amid,
)
from tests.support.grpc_client import SessionClient, retrying
from tests.support.ledger import Ledger

pytestmark = pytest.mark.chaos

CHUNK = 64 * 1024
CHUNKS = 64
"""A 4 MiB file."""
Metadata = Sequence[tuple[str, str]]


def stack_of(own_stack: Stack) -> tuple[Metadata, Path]:
    spec = StackSpec(
        auth=True, model=False, ai=False, gateway=False, pod_env={"RATE_USER_PER_MIN": "0"}
    )
    start(own_stack, spec)
    assert own_stack.auth_secret_file is not None
    token = mint(own_stack.auth_secret_file.read_bytes().strip(), "ann", 600)
    return (("authorization", f"Bearer {token}"),), own_stack.data_dir / "attachments"


async def upload(
    address: str, metadata: Metadata, data: bytes, paused: asyncio.Event | None = None,
    resume: asyncio.Event | None = None, pause_after: int = 0,
) -> attachments_pb2.Attachment:  # fmt: skip
    """Streams `data` in CHUNK pieces; with `paused`, sets it after `pause_after` chunks and
    waits for `resume` (the test kills the pod meanwhile)."""

    async def chunks() -> AsyncIterator[attachments_pb2.UploadAttachmentRequest]:
        for k, start_at in enumerate(range(0, len(data), CHUNK)):
            if paused is not None and resume is not None and k == pause_after:
                paused.set()
                await resume.wait()
            piece = data[start_at : start_at + CHUNK]
            name = "f.bin" if k == 0 else ""
            yield attachments_pb2.UploadAttachmentRequest(filename=name, data=piece)

    async with grpc.aio.insecure_channel(address) as channel:
        stub = attachments_pb2_grpc.AttachmentServiceStub(channel)
        reply = await stub.UploadAttachment(chunks(), metadata=metadata, timeout=30)
    return reply.attachment


async def download(address: str, metadata: Metadata, sid: str, sha: str) -> bytes:
    """Refers to the file from a message in `sid` (uploader's right), then downloads it."""
    async with grpc.aio.insecure_channel(address) as channel:
        pod = session_pb2_grpc.SessionServiceStub(channel)
        ref = common_pb2.AttachmentRef(sha256=sha, filename="f.bin")
        request = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="file", attachments=[ref]
        )
        await pod.AppendMessage(request, metadata=metadata, timeout=10)
        stub = attachments_pb2_grpc.AttachmentServiceStub(channel)
        call = stub.DownloadAttachment(
            attachments_pb2.DownloadAttachmentRequest(session_id=sid, sha256=sha),
            metadata=metadata,
            timeout=30,
        )
        return b"".join([reply.data async for reply in call])


def whole_files_only(root: Path) -> list[str]:
    """The shas of files at their final names, each checked to hold exactly those bytes."""
    named = [p for p in root.glob("*/*") if len(p.name) == 64]
    for path in named:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"partial: {path}"
    return [p.name for p in named]


async def test_upload_killed_mid_stream_leaves_nothing_visible_and_a_retry_succeeds(
    own_stack: Stack, session_id: str
) -> None:
    metadata, files = stack_of(own_stack)
    assert own_stack.session is not None
    moment = KillMoment("pod kill -9 mid-upload")
    data = random.Random(moment.seed).randbytes(CHUNK * CHUNKS)
    sha = hashlib.sha256(data).hexdigest()
    addr = own_stack.session_addr
    ledger = Ledger()
    async with grpc.aio.insecure_channel(own_stack.session_addr) as channel:
        append = grpc_append_as(session_pb2_grpc.SessionServiceStub(channel), metadata)
        sessions = [f"{session_id}-{i}" for i in range(3)]
        writers = Writers(ledger, append, sessions, grpc_retryable)
        paused, resume = asyncio.Event(), asyncio.Event()
        pause_after = moment.rng.randrange(1, CHUNKS)
        try:
            writers.start()
            sending = asyncio.create_task(
                upload(own_stack.session_addr, metadata, data, paused, resume, pause_after)
            )
            await paused.wait()
            await kill_amid(writers, moment, own_stack.session.kill9)
            resume.set()
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await sending
            assert failed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            assert sha not in whole_files_only(files)
            await restart(own_stack)
            assert sha not in whole_files_only(files)
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # not attachable: not stored
                await retrying(lambda: download(addr, metadata, f"{session_id}-file", sha))
            assert refused.value.code() in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION,
            ), refused.value
            again = await retrying(lambda: upload(addr, metadata, data))
            await writers.acked(ledger.count() + 20)
            await writers.stop()
        finally:
            await writers.cancel()
    assert (again.sha256, again.size) == (sha, len(data))
    assert sha in whole_files_only(files)
    assert await retrying(lambda: download(addr, metadata, f"{session_id}-f2", sha)) == data
    await check_writes(own_stack, metadata, ledger)
    print(f"killed after chunk {pause_after} of {CHUNKS}")


async def test_upload_acknowledged_before_a_kill9_reads_back_byte_for_byte(
    own_stack: Stack, session_id: str
) -> None:
    metadata, files = stack_of(own_stack)
    assert own_stack.session is not None
    moment = KillMoment("pod kill -9 after an upload's ack")
    data = random.Random(moment.seed).randbytes(CHUNK * CHUNKS)
    ledger = Ledger()
    async with grpc.aio.insecure_channel(own_stack.session_addr) as channel:
        append = grpc_append_as(session_pb2_grpc.SessionServiceStub(channel), metadata)
        writers = Writers(ledger, append, [f"{session_id}-{i}" for i in range(3)], grpc_retryable)
        try:
            writers.start()
            stored = await upload(own_stack.session_addr, metadata, data)
            await kill_amid(writers, moment, own_stack.session.kill9, after_acked=1)
            await restart(own_stack)
            await writers.acked(ledger.count() + 20)
            await writers.stop()
        finally:
            await writers.cancel()
    assert stored.sha256 in whole_files_only(files)
    addr = own_stack.session_addr
    got = await retrying(lambda: download(addr, metadata, f"{session_id}-file", stored.sha256))
    assert got == data
    await check_writes(own_stack, metadata, ledger)


async def restart(stack: Stack) -> None:
    """The killed pod again: the same command (its auth settings), port and data."""
    assert stack.session is not None
    stack.session.start()
    await asyncio.to_thread(wait_grpc_serving, stack.session, stack.session_addr)


async def check_writes(stack: Stack, metadata: Metadata, ledger: Ledger) -> None:
    client = SessionClient(stack.session_addr, tuple(metadata))
    try:
        await assert_appends_kept(client, ledger)
    finally:
        await client.close()
