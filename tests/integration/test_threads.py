"""The thread list (docs/threads.md) over real gRPC with AUTH_MODE=jwt and two pods: order,
previews, unread counts, read marks, pins, archives, keyset pages, renames, deletes, restores and
the purge. Every test uses its own user names, so the module's stack is shared safely."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from deploy.stack.waits import eventually
from durablechat.v1 import access_pb2, session_pb2, threads_pb2
from session_service.features.threads.purge import Purger
from session_service.store.keys import lease_key, log_key, meta_key
from session_service.store.redis_client import close, connect
from tests.support.secure import SecureStack, User, room_id, secure_stack, status_of

MEMBER = access_pb2.ACCESS_ROLE_MEMBER
VIEWER = access_pb2.ACCESS_ROLE_VIEWER
NONE = access_pb2.ACCESS_ROLE_UNSPECIFIED


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    pod_env = {"RATE_USER_PER_MIN": "0", "PURGE_INTERVAL_S": "3600", "AUTO_TITLE_TOKENS": "6"}
    with secure_stack(tmp_path_factory.mktemp("threads"), pod_env) as running:
        yield running


def ids(reply: Any) -> list[str]:
    return [t.session_id for t in reply.threads]


def by_id(reply: Any) -> dict[str, Any]:
    return {t.session_id: t for t in reply.threads}


async def flags(user: User, sid: str, **kwargs: bool) -> Any:
    request = threads_pb2.SetThreadFlagsRequest(session_id=sid, **kwargs)
    return (await user.call("SetThreadFlags", request)).thread


async def test_newest_first_with_previews_unread_counts_and_read_marks(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    one, two, three = room_id(), room_id(), room_id()
    for sid in (one, two, three):
        await ann.post(sid, f"first words of {sid}")
    await ann.set_member(two, bob.name, MEMBER)
    listed = await ann.threads()
    assert ids(listed) == [three, two, one]
    assert listed.threads[0].preview == f"first words of {three}"
    assert [t.unread_count for t in listed.threads] == [0, 0, 0]  # her own posts
    assert listed.next_page_token == ""

    await bob.post(two, "x" * 500)
    listed = await ann.threads()
    assert ids(listed) == [two, three, one]
    assert listed.threads[0].preview == "x" * 200
    assert listed.threads[0].unread_count == 1
    assert listed.threads[0].message_count == 2
    assert ids(await bob.threads()) == [two]
    assert (await bob.threads()).threads[0].unread_count == 0

    marked = await ann.call("MarkRead", threads_pb2.MarkReadRequest(session_id=two))
    assert marked.thread.unread_count == 0
    assert by_id(await ann.threads())[two].unread_count == 0


async def test_pins_come_first_archives_apart_and_each_users_view_is_their_own(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    one, two, three = room_id(), room_id(), room_id()
    for sid in (one, two, three):
        await ann.post(sid, "hi")
        await ann.set_member(sid, bob.name, MEMBER)
    assert (await flags(ann, one, pinned=True)).pinned
    assert (await flags(ann, three, archived=True)).archived
    assert ids(await ann.threads()) == [one, two]
    assert ids(await ann.threads(archived=True)) == [three]
    assert ids(await bob.threads()) == [three, two, one]  # bob's view is unchanged

    await bob.post(three, "activity in an archived thread")
    assert ids(await ann.threads(archived=True)) == [three]  # it stays archived
    pinned = await flags(ann, three, pinned=True)  # pinning unarchives
    assert (pinned.pinned, pinned.archived) == (True, False)
    assert ids(await ann.threads()) == [three, one, two]
    await flags(ann, three, pinned=False)
    await flags(ann, one, pinned=False)
    assert ids(await ann.threads()) == [three, two, one]

    both = threads_pb2.SetThreadFlagsRequest(session_id=one, pinned=True, archived=True)
    assert await status_of(ann, "SetThreadFlags", both) == grpc.StatusCode.INVALID_ARGUMENT
    stranger = threads_pb2.SetThreadFlagsRequest(session_id=room_id(), pinned=True)
    assert await status_of(ann, "SetThreadFlags", stranger) == grpc.StatusCode.NOT_FOUND


async def test_pages_are_keyset_so_new_activity_does_not_repeat_a_thread(
    people: dict[str, User],
) -> None:
    ann = people["ann"]
    made = [room_id() for _ in range(7)]
    for sid in made:
        await ann.post(sid, "hi")
    first = await ann.threads(limit=3)
    assert ids(first) == made[::-1][:3]
    await ann.post(first.threads[1].session_id, "moves to the front")
    await ann.post(made[0], "moves to the front too")  # not yet seen: lands before the cursor
    rest: list[str] = []
    token = first.next_page_token
    while token:
        page = await ann.threads(limit=3, token=token)
        rest += ids(page)
        token = page.next_page_token
    assert rest == made[::-1][3:6]
    assert not set(rest) & set(ids(first))

    for bad in ("nonsense", "r.1.x", "a.1.x$"):
        request = threads_pb2.ListThreadsRequest(page_token=bad)
        assert await status_of(ann, "ListThreads", request) == grpc.StatusCode.INVALID_ARGUMENT
    too_big = threads_pb2.ListThreadsRequest(limit=501)
    assert await status_of(ann, "ListThreads", too_big) == grpc.StatusCode.INVALID_ARGUMENT


async def test_rename_is_listed_streamed_audited_and_refused_to_viewers(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = room_id()
    await ann.post(sid, "hi")
    await ann.set_member(sid, bob.name, VIEWER)
    stream = bob.subscribe(sid, after_seq=0)
    renamed = await ann.call(
        "RenameThread", threads_pb2.RenameThreadRequest(session_id=sid, title="  Trip plans  ")
    )
    while (event := (await stream.read()).event).seq < renamed.seq:
        pass
    assert event.thread_changed.title == "Trip plans"
    assert event.thread_changed.by == ann.name
    stream.cancel()
    assert by_id(await bob.threads())[sid].title == "Trip plans"
    got = await bob.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    assert got.session.title == "Trip plans"
    audit = await ann.call("ListAudit", access_pb2.ListAuditRequest(session_id=sid))
    assert (audit.entries[-1].action, audit.entries[-1].detail) == ("renamed", "Trip plans")

    viewer = threads_pb2.RenameThreadRequest(session_id=sid, title="mine")
    assert await status_of(bob, "RenameThread", viewer) == grpc.StatusCode.PERMISSION_DENIED
    for title in ("", "   ", "x" * 201, "bell\x07"):
        bad = threads_pb2.RenameThreadRequest(session_id=sid, title=title)
        assert await status_of(ann, "RenameThread", bad) == grpc.StatusCode.INVALID_ARGUMENT
    assert by_id(await ann.threads())[sid].title == "Trip plans"


async def test_a_removed_member_loses_the_thread_from_their_list(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = room_id()
    await ann.post(sid, "hi")
    await ann.set_member(sid, bob.name, MEMBER)
    assert ids(await bob.threads()) == [sid]
    await ann.set_member(sid, bob.name, NONE)
    assert ids(await bob.threads()) == []
    mark = threads_pb2.MarkReadRequest(session_id=sid)
    assert await status_of(bob, "MarkRead", mark) == grpc.StatusCode.NOT_FOUND


async def test_delete_hides_the_thread_everywhere_and_restore_brings_it_back(
    people: dict[str, User],
) -> None:
    ann, bob, vic = people["ann"], people["bob"], people["vic"]
    sid = room_id()
    await ann.post(sid, "keep me")
    await ann.set_member(sid, bob.name, MEMBER)
    invite = await ann.invite(sid, MEMBER)
    delete = threads_pb2.DeleteThreadRequest(session_id=sid)
    assert await status_of(bob, "DeleteThread", delete) == grpc.StatusCode.PERMISSION_DENIED
    stream = bob.subscribe(sid)
    await stream.read()  # CaughtUp: the stream is open
    deleted = await ann.call("DeleteThread", delete)
    assert deleted.purge_at.seconds > time.time() + 29 * 86_400  # 30 days by default
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await stream.read()
    assert ended.value.code() == grpc.StatusCode.NOT_FOUND
    assert ids(await ann.threads()) == [] and ids(await bob.threads()) == []
    for user in (ann, bob):
        get = session_pb2.GetSessionRequest(session_id=sid)
        assert await status_of(user, "GetSession", get) == grpc.StatusCode.NOT_FOUND
    assert await status_of(ann, "DeleteThread", delete) == grpc.StatusCode.NOT_FOUND

    # A deleted thread cannot be claimed or joined (nor can it confirm it exists).
    claim = access_pb2.CreateRoomRequest(session_id=sid)
    assert await status_of(bob, "CreateRoom", claim) == grpc.StatusCode.NOT_FOUND
    join = access_pb2.JoinRoomRequest(session_id=sid, code=invite.code)
    assert await status_of(vic, "JoinRoom", join) == grpc.StatusCode.NOT_FOUND
    restore = threads_pb2.RestoreThreadRequest(session_id=sid)
    assert await status_of(bob, "RestoreThread", restore) == grpc.StatusCode.NOT_FOUND
    await ann.call("RestoreThread", restore)
    assert ids(await ann.threads()) == [sid] and ids(await bob.threads()) == [sid]
    listed = await bob.call("ListMessages", session_pb2.ListMessagesRequest(session_id=sid))
    assert [m.content for m in listed.messages] == ["keep me"]
    assert await status_of(ann, "RestoreThread", restore) == grpc.StatusCode.FAILED_PRECONDITION


async def test_purge_deletes_only_threads_still_deleted_after_their_retention(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    gone, kept = room_id(), room_id()
    purge_at = 0
    for sid in (gone, kept):
        await ann.post(sid, "hi")
        reply = await ann.call("DeleteThread", threads_pb2.DeleteThreadRequest(session_id=sid))
        purge_at = max(purge_at, reply.purge_at.seconds * 1000 + reply.purge_at.nanos // 10**6)
    await ann.call("RestoreThread", threads_pb2.RestoreThreadRequest(session_id=kept))
    assert secure.stack.redis is not None
    redis = secure.stack.redis.client()
    eventually(lambda: not redis.exists(lease_key(gone)))  # the delete let the owner go
    client = connect(secure.stack.redis.url, 2000, cluster=False)
    try:
        purger = Purger(client, 3600)
        assert await purger.purge_due(now=purge_at - 60_000) == 0
        assert redis.exists(meta_key(gone), log_key(gone)) == 2
        assert await purger.purge_due(now=purge_at + 1) >= 1
    finally:
        await close(client)
    assert redis.exists(log_key(gone)) == 0
    assert redis.hkeys(meta_key(gone)) == ["epoch"]  # kept: an old owner stays fenced
    assert redis.llen(log_key(kept)) > 0
    listed = await ann.call("ListMessages", session_pb2.ListMessagesRequest(session_id=kept))
    assert [m.content for m in listed.messages] == ["hi"]
    assert await ann.post(gone, "a new thread under the old id")  # the id is free again


async def test_the_thread_routes_over_http(people: dict[str, User], secure: SecureStack) -> None:
    ann = people["ann"]
    one, two = room_id(), room_id()
    for sid in (one, two):
        await ann.post(sid, f"hello {sid}")
    base = f"{secure.stack.gateway_url}/api/threads"
    headers = {"Authorization": f"Bearer {ann.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, url: str, body: object = None) -> tuple[int, Any]:
            async with http.request(method, url, json=body) as response:
                return response.status, await response.json()

        status, listed = await call("GET", base)
        assert status == 200
        assert [t["sessionId"] for t in listed["threads"]] == [two, one]
        assert listed["threads"][0]["preview"] == f"hello {two}"
        assert listed["threads"][0]["lastActivityAt"] > 1_700_000_000_000
        assert listed["nextPageToken"] == ""

        status, patched = await call("PATCH", f"{base}/{one}", {"title": "Plans", "pinned": True})
        assert status == 200
        assert (patched["title"], patched["pinned"]) == ("Plans", True)
        status, page = await call("GET", f"{base}?limit=1")
        assert [t["sessionId"] for t in page["threads"]] == [one] and page["nextPageToken"]
        status, page = await call("GET", f"{base}?limit=1&pageToken={page['nextPageToken']}")
        assert [t["sessionId"] for t in page["threads"]] == [two]

        assert (await call("POST", f"{base}/{two}/read"))[1]["unreadCount"] == 0
        status, deleted = await call("DELETE", f"{base}/{two}")
        assert status == 200 and deleted["purgeAt"] > time.time() * 1000
        assert [t["sessionId"] for t in (await call("GET", base))[1]["threads"]] == [one]
        assert (await call("POST", f"{base}/{two}/restore"))[0] == 200
        assert len((await call("GET", base))[1]["threads"]) == 2

        for method, url, body in [
            ("PATCH", f"{base}/{one}", {"colour": "red"}),
            ("PATCH", f"{base}/{one}", {"pinned": "yes"}),
            ("PATCH", f"{base}/{one}", {"title": ""}),
            ("PATCH", f"{base}/{one}", []),
            ("PATCH", f"{base}/{one}", {"title": "Lost", "pinned": True, "archived": True}),
            ("GET", f"{base}?archived=maybe", None),
            ("GET", f"{base}?pageToken=forged", None),
            ("GET", f"{base}?limit=100000", None),
        ]:
            status, body = await call(method, url, body)
            assert status == 400, (method, url, body)
            assert body["error"]["code"] == "INVALID_ARGUMENT"
        assert (await call("PATCH", f"{base}/{room_id()}", {"pinned": True}))[0] == 404
    assert by_id(await ann.threads())[one].title == "Plans"


async def test_a_thread_is_titled_from_its_first_exchange_unless_a_person_named_it(
    people: dict[str, User],
) -> None:
    ann = people["ann"]
    titled, named = room_id(), room_id()
    for sid in (titled, named):
        await ann.post(sid, "hi")
    await ann.call("RenameThread", threads_pb2.RenameThreadRequest(session_id=named, title="Mine"))
    for sid in (titled, named):
        stream = ann.subscribe(sid)
        await ann.call("SendPrompt", session_pb2.SendPromptRequest(session_id=sid, content="q"))
        while not (event := (await stream.read()).event).HasField("answer_ended"):
            pass
        if sid == titled:  # the title follows the answer, as a rename by auto-title
            while not (event := (await stream.read()).event).HasField("thread_changed"):
                pass
            assert (event.thread_changed.title, event.thread_changed.by) == (
                "tok0 tok1 tok2 tok3 tok4 tok5",
                "auto-title",
            )
        stream.cancel()
    listed = by_id(await ann.threads())
    assert listed[titled].title == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert listed[named].title == "Mine"
