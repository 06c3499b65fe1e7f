"""Every user's footprint is bounded (session_service/store/footprint.py, docs/footprint.md): floods
of state patches, messages, sessions, imports and uploads stop at their limits with
RESOURCE_EXHAUSTED naming the setting, and Redis (read directly) holds nothing past the limit.
Redis at its maxmemory refuses writes clearly while reads go on."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis

from deploy.stack.waits import async_eventually
from durablechat.v1 import (
    access_pb2,
    attachments_pb2,
    attachments_pb2_grpc,
    branches_pb2,
    common_pb2,
    export_pb2,
    session_pb2,
    threads_pb2,
)
from tests.support.secure import SecureStack, User, room_id, secure_stack

LOG_BYTES = 64 * 1024
LOG_EVENTS = 40
SESSIONS = 4
IMPORT_BYTES = 16 * 1024
USER_ATTACHMENT_BYTES = 1024 * 1024
FILE_BYTES = 300 * 1024
LIMITS = {
    "MAX_LOG_BYTES": str(LOG_BYTES),
    "MAX_LOG_EVENTS": str(LOG_EVENTS),
    "MAX_SESSIONS_PER_USER": str(SESSIONS),
    "MAX_IMPORT_BYTES": str(IMPORT_BYTES),
    "MAX_ATTACHMENT_BYTES_PER_USER": str(USER_ATTACHMENT_BYTES),
    "DELETED_RETENTION_S": "0",  # a deleted thread is purged at once (its place comes back)
    "PURGE_INTERVAL_S": "1",
}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("footprint"), pod_env=LIMITS) as running:
        yield running


@pytest.fixture
async def redis(secure: SecureStack) -> AsyncIterator[aioredis.Redis]:
    assert secure.stack.redis is not None
    client = aioredis.Redis.from_url(secure.stack.redis.url)
    try:
        yield client
    finally:
        await client.aclose()


def fresh(secure: SecureStack, pod: str = "pod-a") -> User:
    return secure.user(f"u-{uuid.uuid4().hex[:12]}", pod)


async def refusal(user: User, method: str, request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await user.call(method, request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
    return refused.value


async def flood(user: User, method: str, make: Any, most: int) -> tuple[int, grpc.aio.AioRpcError]:
    """Calls until refused; returns (calls accepted, the refusal)."""
    for accepted in range(most):
        try:
            await user.call(method, make(accepted))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            return accepted, exc
    raise AssertionError(f"{most} calls of {method} were all accepted")


async def stored_log(redis: aioredis.Redis, sid: str) -> list[bytes]:
    return [
        e if isinstance(e, bytes) else e.encode()
        for e in await redis.lrange(f"dc:{{{sid}}}:log", 0, -1)
    ]


async def test_state_put_flood_stops_at_log_bytes(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """Attack: 2 MiB state patches PUT in a loop, stored forever, fill Redis."""
    user, sid = fresh(secure), room_id()
    blob = "x" * 8000
    try:

        def patch(i: int) -> session_pb2.UpdateStateRequest:
            return session_pb2.UpdateStateRequest(
                session_id=sid, patch_json=json.dumps({"blob": f"{i}{blob}"})
            )

        accepted, refused = await flood(user, "UpdateState", patch, 100)
        assert "MAX_LOG_BYTES" in (refused.details() or "")
        log = await stored_log(redis, sid)
        assert 0 < accepted < 100 and len(log) == accepted + 1  # + the owner's claim
        assert sum(map(len, log)) <= LOG_BYTES
        assert int(await redis.hget(f"dc:{{{sid}}}:meta", "lb") or -1) == sum(map(len, log))
        # Over REST too: 429 with the JSON error naming the setting; still nothing stored.
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                f"{secure.stack.gateway_url}/api/chat/session/{sid}",
                headers={"Authorization": f"Bearer {user.token}"},
                data=json.dumps({"blob": blob}),
            ) as response,
        ):
            assert response.status == 429
            error = (await response.json())["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED" and "MAX_LOG_BYTES" in error["message"]
        assert await stored_log(redis, sid) == log
    finally:
        await user.close()


def message(sid: str, i: int) -> session_pb2.AppendMessageRequest:
    return session_pb2.AppendMessageRequest(
        session_id=sid, role=common_pb2.ROLE_USER, content=f"m{i}"
    )


async def test_message_flood_stops_at_log_events(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """Attack: tiny messages in a loop grow one log without end. An answer accepted just
    under the limit still ends (its end is the documented overshoot)."""
    user, sid = fresh(secure), room_id()
    try:
        for i in range(LOG_EVENTS - 3):  # the claim + 37 messages: 38 events
            await user.call("AppendMessage", message(sid, i))
        prompt = session_pb2.SendPromptRequest(session_id=sid, content="tokens=3")
        await user.call("SendPrompt", prompt)  # 2 events: the log is at its limit
        refused = await refusal(user, "AppendMessage", message(sid, 99))
        assert "MAX_LOG_EVENTS" in (refused.details() or "")

        async def answer_ended() -> list[bytes]:
            log = await stored_log(redis, sid)
            assert json.loads(log[-1])["k"] == "e"
            return log

        log = await async_eventually(answer_ended, within=30)
        assert len(log) == LOG_EVENTS + 1  # the answer's end, and nothing else, past it
        await refusal(user, "SendPrompt", prompt)
        await refusal(user, "AppendMessage", message(sid, 100))
        assert await stored_log(redis, sid) == log
    finally:
        await user.close()


async def owned(redis: aioredis.Redis, user: User) -> set[bytes]:
    return {
        m if isinstance(m, bytes) else m.encode()
        for m in await redis.smembers(f"dc:u:{{{user.name}}}:owned")
    }


async def test_session_creation_flood_stops_at_limit(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """Attack: one user creates sessions without end (first writes and CreateRoom, through
    both pods)."""
    user, other = fresh(secure), None
    try:
        created = []
        for i in range(SESSIONS):
            if i % 2:
                created.append((await user.create_room()).session_id)
            else:
                sid = room_id()
                await user.post(sid, "first")
                created.append(sid)
        assert await owned(redis, user) == {s.encode() for s in created}
        other = secure.user(user.name, "pod-b")
        sid = room_id()
        refused = await refusal(other, "AppendMessage", message(sid, 0))
        assert "MAX_SESSIONS_PER_USER" in (refused.details() or "")
        refused = await refusal(other, "CreateRoom", access_pb2.CreateRoomRequest())
        assert "MAX_SESSIONS_PER_USER" in (refused.details() or "")
        assert await redis.exists(f"dc:{{{sid}}}:log") == 0
        assert await owned(redis, user) == {s.encode() for s in created}
        await user.post(created[0], "writing to my own sessions goes on")
    finally:
        await user.close()
        if other is not None:
            await other.close()


async def test_purged_threads_give_their_place_back(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """A user at MAX_SESSIONS_PER_USER deletes a thread: once purged, it no longer counts."""
    user = fresh(secure)
    try:
        created = [(await user.create_room()).session_id for _ in range(SESSIONS)]
        await refusal(user, "CreateRoom", access_pb2.CreateRoomRequest())
        await user.call("DeleteThread", threads_pb2.DeleteThreadRequest(session_id=created[0]))

        async def purged() -> bool:
            return created[0].encode() not in await owned(redis, user)

        await async_eventually(purged, within=30)
        await user.create_room()
        assert len(await owned(redis, user)) == SESSIONS
    finally:
        await user.close()


async def export_of(user: User, sid: str) -> str:
    reply = await user.call("ExportSession", export_pb2.ExportSessionRequest(session_id=sid))
    assert not reply.next_page_token
    return str(reply.jsonl)


async def test_import_flood_stops_at_session_limit(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """Attack: ImportSession in a loop, each call a new session."""
    user = fresh(secure)
    try:
        source = room_id()
        await user.post(source, "to be copied")
        text = await export_of(user, source)

        def again(_: int) -> export_pb2.ImportSessionRequest:
            return export_pb2.ImportSessionRequest(jsonl=text)

        accepted, refused = await flood(user, "ImportSession", again, 3 * SESSIONS)
        assert accepted == SESSIONS - 1  # the source counts too
        assert "MAX_SESSIONS_PER_USER" in (refused.details() or "")
        assert len(await owned(redis, user)) == SESSIONS
        fork = branches_pb2.ForkSessionRequest(session_id=source, at_seq=2)
        refused = await refusal(user, "ForkSession", fork)
        assert "MAX_SESSIONS_PER_USER" in (refused.details() or "")
        assert len(await owned(redis, user)) == SESSIONS
    finally:
        await user.close()


async def test_oversized_import_refused(secure: SecureStack, redis: aioredis.Redis) -> None:
    """Attack: one import call far larger than a session should hold."""
    user = fresh(secure)
    try:
        source = room_id()
        for i in range(8):
            await user.post(source, f"{i}" + "y" * 3000)
        text = await export_of(user, source)
        assert len(text.encode()) > IMPORT_BYTES
        sid = room_id()
        request = export_pb2.ImportSessionRequest(session_id=sid, jsonl=text)
        refused = await refusal(user, "ImportSession", request)
        assert "MAX_IMPORT_BYTES" in (refused.details() or "")
        assert await redis.exists(f"dc:{{{sid}}}:log", f"dc:{{{sid}}}:meta") == 0
        assert await owned(redis, user) == {source.encode()}
    finally:
        await user.close()


async def upload(secure: SecureStack, user: User, data: bytes) -> Any:
    async def chunks() -> AsyncIterator[attachments_pb2.UploadAttachmentRequest]:
        yield attachments_pb2.UploadAttachmentRequest(filename="f.bin", data=data)

    async with grpc.aio.insecure_channel(secure.stack.pod_addrs["pod-a"]) as channel:
        stub = attachments_pb2_grpc.AttachmentServiceStub(channel)
        return await stub.UploadAttachment(chunks(), metadata=user.metadata, timeout=30)


def attachment_files(root: Path) -> set[str]:
    return {name for _, _, names in os.walk(root) for name in names}


async def test_attachment_bytes_flood_stops_at_user_limit(
    secure: SecureStack, redis: aioredis.Redis
) -> None:
    """Attack: distinct files uploaded in a loop fill the attachments disk."""
    user = fresh(secure)
    root = secure.stack.workdir / "attachments"
    try:
        first = os.urandom(FILE_BYTES)
        uploaded = [await upload(secure, user, first)]
        while len(uploaded) * FILE_BYTES + FILE_BYTES <= USER_ATTACHMENT_BYTES:
            uploaded.append(await upload(secure, user, os.urandom(FILE_BYTES)))
        before = attachment_files(root)
        extra = os.urandom(FILE_BYTES)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await upload(secure, user, extra)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "MAX_ATTACHMENT_BYTES_PER_USER" in (refused.value.details() or "")
        assert attachment_files(root) == before  # no file, no temporary file
        sha = hashlib.sha256(extra).hexdigest()
        assert await redis.exists(f"dc:att:{{{sha}}}", f"dc:att:{{{sha}}}:by") == 0
        used = int(await redis.get(f"dc:u:{{{user.name}}}:attb") or -1)
        assert used == len(uploaded) * FILE_BYTES <= USER_ATTACHMENT_BYTES
        again = await upload(secure, user, first)  # a file already counted costs nothing
        assert again.attachment.sha256 == uploaded[0].attachment.sha256
    finally:
        await user.close()


async def test_redis_maxmemory_refuses_clearly(secure: SecureStack, redis: aioredis.Redis) -> None:
    """Redis at its maxmemory (noeviction): a write gets RESOURCE_EXHAUSTED naming maxmemory,
    not INTERNAL or a hang; reads go on, pods stay members, acknowledged writes are all there.
    Last in the module: it fills Redis (and empties it again)."""
    user, sid = fresh(secure), room_id()
    try:
        acknowledged = [(await user.post(sid, f"kept {i}")).message.seq for i in range(3)]
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", 1)  # every write past here is over the limit
        try:
            refused = await refusal(user, "AppendMessage", message(sid, 9))
            assert "maxmemory" in (refused.details() or "")
            members: dict[Any, float] = dict(
                await redis.zrange("{dc-cluster}:members", 0, -1, withscores=True)  # type: ignore[arg-type]
            )

            async def heartbeats_go_on() -> bool:
                now: dict[Any, float] = dict(
                    await redis.zrange("{dc-cluster}:members", 0, -1, withscores=True)  # type: ignore[arg-type]
                )
                return all(now[pod] > score for pod, score in members.items())

            await async_eventually(heartbeats_go_on, within=15)
            reader = secure.user(user.name, "pod-b")
            try:
                page = await reader.call(
                    "ListMessages", session_pb2.ListMessagesRequest(session_id=sid)
                )
            finally:
                await reader.close()
            assert [m.seq for m in page.messages] == acknowledged
            with pytest.raises(grpc.aio.AioRpcError) as unknown:  # activation still works
                await user.call("GetSession", session_pb2.GetSessionRequest(session_id=room_id()))
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await redis.config_set("maxmemory", 0)
        log = await stored_log(redis, sid)
        assert [json.loads(e)["c"] for e in log[1:]] == [f"kept {i}" for i in range(3)]
        await user.post(sid, "room again")
    finally:
        await user.close()
