"""The access battery on the gRPC API with AUTH_MODE=jwt, calling the non-owner pod too (so every
check also holds for forwarded calls). Each test names what it attacks."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from durablechat.v1 import access_pb2, session_pb2
from tests.support.fuzz.verdict import MANAGE, WRITES
from tests.support.secure import SecureStack, User, every_request, room_id, secure_stack, status_of

OWNER = access_pb2.ACCESS_ROLE_OWNER
MEMBER = access_pb2.ACCESS_ROLE_MEMBER
VIEWER = access_pb2.ACCESS_ROLE_VIEWER
NONE = access_pb2.ACCESS_ROLE_UNSPECIFIED


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("secure")) as running:
        yield running


@pytest.fixture
async def users(secure: SecureStack) -> AsyncIterator[dict[str, User]]:
    made = {
        "ann": secure.user("ann"),
        "bob": secure.user("bob", "pod-b"),
        "eve": secure.user("eve", "pod-b"),
    }
    try:
        yield made
    finally:
        for user in made.values():
            await user.close()


async def test_idor_every_rpc_on_another_users_session_is_not_found_and_changes_nothing(
    users: dict[str, User],
) -> None:
    """Attack: a second user calls every RPC with the id of a session they do not belong to."""
    ann, eve = users["ann"], users["eve"]
    sid = room_id()
    await ann.post(sid, "private")
    before = await ann.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    for method, request in every_request(sid).items():
        assert await status_of(eve, method, request) == grpc.StatusCode.NOT_FOUND, method
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await eve.subscribe(sid).read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    after = await ann.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    assert after.session.last_seq == before.session.last_seq
    assert after.session.owner == "ann"
    assert after.session.your_role == OWNER


async def test_room_id_guessing_gets_the_same_answer_as_a_real_room(
    users: dict[str, User],
) -> None:
    """Attack: probe room ids; a real room and an unused id must look the same to outsiders."""
    ann, eve = users["ann"], users["eve"]
    created = await ann.create_room()
    assert re.fullmatch(r"[0-9a-f]{64}", created.session_id)
    assert created.role == OWNER
    assert created.share_path == f"/#t={created.session_id}"
    answers = []
    for sid in (created.session_id, "f" * 64, room_id()):
        try:
            await eve.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
        except grpc.aio.AioRpcError as exc:
            answers.append((exc.code(), exc.details()))
    assert answers == [(grpc.StatusCode.NOT_FOUND, "session not found")] * 3


async def test_viewer_cannot_post_prompt_patch_or_cancel(users: dict[str, User]) -> None:
    """Attack: a viewer tries every write."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", VIEWER)
    writes = {k: v for k, v in every_request(sid).items() if k in WRITES}
    for method, request in writes.items():
        assert await status_of(bob, method, request) == grpc.StatusCode.PERMISSION_DENIED, method
    listed = await bob.call("ListMessages", session_pb2.ListMessagesRequest(session_id=sid))
    assert [m.content for m in listed.messages] == []
    got = await bob.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    assert got.session.your_role == VIEWER


async def test_member_can_write_but_not_manage(users: dict[str, User]) -> None:
    """Attack: a member tries the owner's operations (members, invites, audit)."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", MEMBER)
    posted = await bob.post(sid, "hello from bob")
    assert posted.message.user == "bob"
    for method in sorted(MANAGE):
        request = every_request(sid)[method]
        assert await status_of(bob, method, request) == grpc.StatusCode.PERMISSION_DENIED, method


async def test_the_user_field_cannot_impersonate(users: dict[str, User]) -> None:
    """Attack: post with `user` set to someone else; the token's user is stored."""
    ann = users["ann"]
    sid = room_id()
    request = every_request(sid)["AppendMessage"]
    request.user = "bob"
    reply = await ann.call("AppendMessage", request)
    assert reply.message.user == "ann"


async def test_invites_join_expire_and_revoke(users: dict[str, User], secure: SecureStack) -> None:
    """Attack: reuse a revoked invite, an expired one, a guessed code, a code of another room."""
    ann, bob, eve = users["ann"], users["bob"], users["eve"]
    sid = (await ann.create_room()).session_id
    other = (await ann.create_room()).session_id
    viewer = await ann.invite(sid, VIEWER)
    assert viewer.share_path == f"/#t={sid}&invite={viewer.code}"
    revoked = await ann.invite(sid, MEMBER)
    other_invite = await ann.invite(other, MEMBER)
    revoke = access_pb2.RevokeInviteRequest(session_id=sid, invite_id=revoked.invite_id)
    assert (await ann.call("RevokeInvite", revoke)).revoked
    assert not (await ann.call("RevokeInvite", revoke)).revoked
    for code in (revoked.code, "x" * 43, other_invite.code):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await eve.join(sid, code)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await bob.join(sid, viewer.code)).role == VIEWER
    assert (await bob.join(sid, viewer.code)).role == VIEWER  # again: unchanged
    access = await ann.call("GetAccess", access_pb2.GetAccessRequest(session_id=sid))
    assert [(m.user, m.role) for m in access.members] == [("ann", OWNER), ("bob", VIEWER)]
    assert {i.invite_id: i.revoked for i in access.invites} == {
        viewer.invite_id: False,
        revoked.invite_id: True,
    }
    seen_by_bob = await bob.call("GetAccess", access_pb2.GetAccessRequest(session_id=sid))
    assert list(seen_by_bob.invites) == []  # invites are the owner's business


async def test_expired_invite_is_refused(users: dict[str, User]) -> None:
    """Attack: join with an invite after its expiry."""
    ann, eve = users["ann"], users["eve"]
    sid = (await ann.create_room()).session_id
    invite = await ann.invite(sid, MEMBER, ttl_s=1)
    # Expiry is wall-clock time passing, which no event announces: wait it out.
    await asyncio.sleep((invite.expires_at.ToMilliseconds() - time.time() * 1000) / 1000 + 0.05)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await eve.join(sid, invite.code)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_removed_member_loses_their_open_stream_and_access(users: dict[str, User]) -> None:
    """Attack: keep reading a room after being removed from it."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", MEMBER)
    stream = bob.subscribe(sid)
    kinds = []
    while True:
        reply = await stream.read()
        kinds.append(reply.event.WhichOneof("kind"))
        if kinds[-1] == "presence_changed":
            assert list(reply.event.presence_changed.users) == ["bob"]
            break
    await ann.set_member(sid, "bob", NONE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while True:
            reply = await stream.read()
            assert reply is not grpc.aio.EOF
            kinds.append(reply.event.WhichOneof("kind"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "access_changed" in kinds
    assert await status_of(bob, "ListMessages", every_request(sid)["ListMessages"]) == (
        grpc.StatusCode.NOT_FOUND
    )


async def test_presence_lists_who_is_connected(users: dict[str, User]) -> None:
    """Presence events: who is subscribed now, to every subscriber."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", VIEWER)
    ann_stream = ann.subscribe(sid)

    async def next_presence(stream: object) -> list[str]:
        while True:
            reply = await stream.read()  # type: ignore[attr-defined]
            if reply.event.WhichOneof("kind") == "presence_changed":
                return list(reply.event.presence_changed.users)

    assert await next_presence(ann_stream) == ["ann"]
    bob_stream = bob.subscribe(sid)
    assert await next_presence(bob_stream) == ["ann", "bob"]
    assert await next_presence(ann_stream) == ["ann", "bob"]
    access = await ann.call("GetAccess", access_pb2.GetAccessRequest(session_id=sid))
    assert {m.user: m.online for m in access.members} == {"ann": True, "bob": True}
    bob_stream.cancel()
    assert await next_presence(ann_stream) == ["ann"]
    ann_stream.cancel()


async def test_owner_cannot_be_removed_or_demoted(users: dict[str, User]) -> None:
    """Attack: a member (or the owner by mistake) removes the owner."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", MEMBER)
    assert (
        await status_of(bob, "SetMember", access_pb2.SetMemberRequest(session_id=sid, user="ann"))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        await status_of(
            ann, "SetMember", access_pb2.SetMemberRequest(session_id=sid, user="ann", role=VIEWER)
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    left = await bob.set_member(sid, "bob", NONE)  # leaving is allowed
    assert left.seq > 0


async def test_audit_log_says_who_did_what(users: dict[str, User]) -> None:
    """The owner reads who did what; nobody else can."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    invite = await ann.invite(sid, MEMBER)
    await bob.join(sid, invite.code)
    await bob.post(sid, "hi")
    await bob.call(
        "UpdateState", session_pb2.UpdateStateRequest(session_id=sid, patch_json='{"a":1}')
    )
    await ann.set_member(sid, "bob", NONE)
    audit = await ann.call("ListAudit", access_pb2.ListAuditRequest(session_id=sid))
    rows = [(e.user, e.action, e.detail) for e in audit.entries]
    assert rows == [
        ("ann", "member_set", "ann owner"),
        ("ann", "invite_created", f"invite {invite.invite_id} member"),
        ("bob", "joined", f"invite {invite.invite_id} member"),
        ("bob", "posted", "user"),
        ("bob", "state_changed", "version 1"),
        ("ann", "member_removed", "bob"),
    ]
    assert [e.seq for e in audit.entries] == sorted(e.seq for e in audit.entries)


async def test_usage_of_other_users_is_denied(users: dict[str, User]) -> None:
    """Attack: read another user's token usage."""
    eve = users["eve"]
    request = session_pb2.GetUserUsageRequest(user="ann")
    assert await status_of(eve, "GetUserUsage", request) == grpc.StatusCode.PERMISSION_DENIED
    own = await eve.call("GetUserUsage", session_pb2.GetUserUsageRequest())
    assert own.answers >= 0


async def test_a_removed_member_cannot_rejoin_with_the_old_invite(users: dict[str, User]) -> None:
    """Attack: after being removed, join again with the invite used before."""
    ann, bob = users["ann"], users["bob"]
    sid = (await ann.create_room()).session_id
    invite = await ann.invite(sid, MEMBER)
    await bob.join(sid, invite.code)
    await ann.set_member(sid, "bob", NONE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bob.join(sid, invite.code)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await ann.set_member(sid, "bob", VIEWER)  # the owner may let them back in
    got = await bob.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    assert got.session.your_role == VIEWER


async def test_a_refused_write_claims_nothing(users: dict[str, User]) -> None:
    """Attack: grab an unused id with a write that fails (wrong expected version), then keep
    it from its rightful creator."""
    ann, eve = users["ann"], users["eve"]
    sid = room_id()
    request = session_pb2.UpdateStateRequest(session_id=sid, patch_json="{}", expected_version=9)
    assert await status_of(eve, "UpdateState", request) == grpc.StatusCode.ABORTED
    assert await status_of(eve, "CancelAnswer", every_request(sid)["CancelAnswer"]) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert (await ann.create_room(sid)).role == OWNER


async def test_history_written_without_access_control_is_nobodys(
    users: dict[str, User], secure: SecureStack
) -> None:
    """Attack: claim a session that has history from before access control (no owner) by
    writing to it first."""
    sid = room_id()
    assert secure.stack.redis is not None
    entry = b'{"k":"m","r":"user","c":"old secret","t":1}'
    secure.stack.redis.client().rpush(f"dc:{{{sid}}}:log", entry)
    for method in ("AppendMessage", "GetSession", "CreateRoom"):
        assert await status_of(users["eve"], method, every_request(sid)[method]) == (
            grpc.StatusCode.NOT_FOUND
        ), method
