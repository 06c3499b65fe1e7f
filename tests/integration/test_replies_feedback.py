"""Replies (`reply_to`) and feedback on assistant answers over real gRPC and HTTP with
AUTH_MODE=jwt: stored, listed, streamed, audited, replaced per user, refused when malformed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from durablechat.v1 import access_pb2, common_pb2, session_pb2
from tests.support.secure import SecureStack, User, room_id, secure_stack, status_of
from tests.support.user_calls import answered, rate

UP, DOWN, NONE = common_pb2.RATING_UP, common_pb2.RATING_DOWN, common_pb2.RATING_UNSPECIFIED


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("feedback")) as running:
        yield running


async def messages(user: User, sid: str) -> list[Any]:
    reply = await user.call("ListMessages", session_pb2.ListMessagesRequest(session_id=sid))
    return list(reply.messages)


async def test_replies_are_stored_listed_and_must_name_a_message(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = room_id()
    first = (await ann.post(sid, "where shall we go?")).message
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_MEMBER)
    reply = await bob.call(
        "AppendMessage",
        session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="the sea", reply_to=first.seq
        ),
    )
    assert reply.message.reply_to == first.seq
    prompt_seq, answer = await answered(ann, sid, "plan it tokens=3", reply_to=reply.message.seq)
    listed = {m.seq: m for m in await messages(bob, sid)}
    assert listed[reply.message.seq].reply_to == first.seq
    assert listed[prompt_seq].reply_to == reply.message.seq
    assert listed[answer.seq].reply_to == 0

    before = len(await messages(ann, sid))
    for bad in (10_000, 1, answer.answer_seq):  # no such seq; the owner grant; an answer start
        request = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="x", reply_to=bad
        )
        assert await status_of(ann, "AppendMessage", request) == grpc.StatusCode.INVALID_ARGUMENT
        prompt = session_pb2.SendPromptRequest(session_id=sid, content="x", reply_to=bad)
        assert await status_of(ann, "SendPrompt", prompt) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await messages(ann, sid)) == before


async def test_feedback_is_per_user_replaced_withdrawn_streamed_and_audited(
    people: dict[str, User],
) -> None:
    ann, bob, vic = people["ann"], people["bob"], people["vic"]
    sid = room_id()
    await ann.post(sid, "hi")
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_MEMBER)
    await ann.set_member(sid, vic.name, access_pb2.ACCESS_ROLE_VIEWER)
    prompt_seq, answer = await answered(ann, sid, "rate me tokens=4")

    stream = vic.subscribe(sid, after_seq=answer.seq)
    rated = await rate(ann, sid, answer.seq, UP, "clear and short")
    while not (event := (await stream.read()).event).HasField("feedback_changed"):
        pass  # CaughtUp, presence
    stream.cancel()
    assert event.seq == rated.seq
    assert event.feedback_changed.message_seq == answer.seq
    assert event.feedback_changed.feedback.user == ann.name
    assert event.feedback_changed.feedback.rating == UP

    await rate(bob, sid, answer.seq, DOWN, "too short")
    await rate(ann, sid, answer.seq, DOWN, "changed my mind")
    given = {m.seq: m for m in await messages(vic, sid)}[answer.seq].feedback
    assert [(f.user, f.rating, f.comment) for f in given] == [
        (bob.name, DOWN, "too short"),
        (ann.name, DOWN, "changed my mind"),
    ]
    await rate(bob, sid, answer.seq, NONE)  # withdrawn
    given = {m.seq: m for m in await messages(ann, sid)}[answer.seq].feedback
    assert [f.user for f in given] == [ann.name]

    assert await status_of(
        vic, "SetFeedback", session_pb2.SetFeedbackRequest(session_id=sid, message_seq=answer.seq)
    ) == (grpc.StatusCode.PERMISSION_DENIED)
    refused: list[tuple[int, Any, str]] = [
        (prompt_seq, UP, ""),
        (answer.seq, 7, ""),
        (answer.seq, UP, "c" * 2001),
    ]
    for seq, rating, comment in refused:
        request = session_pb2.SetFeedbackRequest(
            session_id=sid, message_seq=seq, rating=rating, comment=comment
        )
        assert await status_of(ann, "SetFeedback", request) == grpc.StatusCode.INVALID_ARGUMENT
    audit = await ann.call("ListAudit", access_pb2.ListAuditRequest(session_id=sid))
    rows = [(e.user, e.detail) for e in audit.entries if e.action == "feedback"]
    assert rows[0] == (ann.name, f"up on {answer.seq}")
    assert rows[-1] == (bob.name, f"withdrawn on {answer.seq}")


async def test_replies_and_feedback_over_http(people: dict[str, User], secure: SecureStack) -> None:
    ann = people["ann"]
    sid = room_id()
    first = (await ann.post(sid, "hello")).message
    _, answer = await answered(ann, sid, "answer tokens=2")
    api = f"{secure.stack.gateway_url}/api/chat/session/{sid}"
    headers = {"Authorization": f"Bearer {ann.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {"role": "user", "content": "replying", "replyTo": first.seq}
        async with http.post(f"{api}/messages", json=body) as response:
            assert response.status == 201
            assert (await response.json())["replyTo"] == first.seq
        feedback = {"rating": "up", "comment": "nice"}
        async with http.post(f"{api}/messages/{answer.seq}/feedback", json=feedback) as response:
            assert response.status == 200
        async with http.get(f"{api}/messages") as response:
            listed = {m["seq"]: m for m in (await response.json())["messages"]}
        assert listed[answer.seq]["feedback"][0]["rating"] == "up"
        assert listed[answer.seq]["feedback"][0]["comment"] == "nice"
        assert "feedback" not in listed[first.seq] and "replyTo" not in listed[first.seq]
        bad: list[tuple[str, dict[str, Any]]] = [
            (f"{api}/messages/{answer.seq}/feedback", {"rating": "meh"}),
            (f"{api}/messages/{answer.seq}/feedback", {"rating": []}),
            (f"{api}/messages/{answer.seq}/feedback", {"rating": {}}),
            (f"{api}/messages/{answer.seq}/feedback", {"rating": "up", "extra": 1}),
            (f"{api}/messages/{first.seq}/feedback", {"rating": "up"}),
            (f"{api}/messages/x/feedback", {"rating": "up"}),
            (f"{api}/messages", {"role": "user", "content": "x", "replyTo": -1}),
            (f"{api}/messages", {"role": "user", "content": "x", "replyTo": 99_999}),
        ]
        for url, refused in bad:
            async with http.post(url, json=refused) as response:
                assert response.status == 400, (url, refused)
