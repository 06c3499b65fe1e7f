"""Export → import round trips (docs/export.md) over real gRPC and HTTP with AUTH_MODE=jwt: the
imported session equals the original (messages, replies, state, answers, usage, titles,
feedback), the export paginates, and a bad file stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from durablechat.v1 import access_pb2, common_pb2, export_pb2, session_pb2, threads_pb2
from tests.support.secure import SecureStack, User, room_id, secure_stack, status_of
from tests.support.user_calls import answered, export, imported_by, rate


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("export")) as running:
        yield running


async def rich_session(ann: User, bob: User) -> str:
    """A session with every exported kind of event."""
    sid = room_id()
    first = (await ann.post(sid, "Where shall we go?")).message
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_MEMBER)
    reply = await bob.call(
        "AppendMessage",
        session_pb2.AppendMessageRequest(
            session_id=sid,
            role=common_pb2.ROLE_USER,
            content="The sea 🌊\u2028(a line separator: JSON keeps it raw)",
            reply_to=first.seq,
            client_message_id="bob-1",
        ),
    )
    for patch in ('{"topic":"trip","days":3}', '{"days":null,"where":{"sea":true}}'):
        await ann.call(
            "UpdateState", session_pb2.UpdateStateRequest(session_id=sid, patch_json=patch)
        )
    _, answer = await answered(ann, sid, "plan it tokens=5", reply_to=reply.message.seq)
    await rate(ann, sid, answer.seq, common_pb2.RATING_UP, "useful")
    await rate(bob, sid, answer.seq, common_pb2.RATING_DOWN, "too short")
    await ann.call("RenameThread", threads_pb2.RenameThreadRequest(session_id=sid, title="Trip"))
    return sid


async def test_export_then_import_restores_the_session_exactly(people: dict[str, User]) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = await rich_session(ann, bob)
    lines, _ = await export(ann, sid)
    header = json.loads(lines[0])
    assert (header["format"], header["version"], header["sessionId"]) == (
        "durablechat.session",
        1,
        sid,
    )
    assert header["events"] == len(lines) - 1
    kinds = [json.loads(line)["type"] for line in lines[1:]]
    assert kinds == [
        *("message", "message", "state", "state", "message"),
        *("answer_started", "answer_ended", "feedback", "feedback", "renamed"),
    ]

    imported = await ann.call(
        "ImportSession", export_pb2.ImportSessionRequest(jsonl="\n".join(lines))
    )
    assert imported.events == len(lines) - 1
    assert imported.role == access_pb2.ACCESS_ROLE_OWNER
    copy = imported.session_id
    again, _ = await export(ann, copy)
    assert imported_by(again[1:], ann.name) == lines[1:]
    assert json.loads(again[0])["sessionId"] == copy

    def view(s: Any) -> tuple[Any, ...]:
        return (s.state_json, s.version, s.message_count, s.title, s.usage)

    original = await ann.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
    restored = await ann.call("GetSession", session_pb2.GetSessionRequest(session_id=copy))
    assert view(restored.session) == view(original.session)

    async def contents(session_id: str) -> list[tuple[Any, ...]]:
        listed = await ann.call(
            "ListMessages", session_pb2.ListMessagesRequest(session_id=session_id)
        )
        by_seq = {m.seq: m for m in listed.messages}
        return [
            (
                m.role,
                m.content,
                recorded(m),
                m.created_at.ToMilliseconds(),
                m.client_message_id,
                by_seq[m.reply_to].content if m.reply_to else None,
                m.answer_status,
                m.usage.completion_tokens,
                [(recorded(f), f.rating, f.comment) for f in m.feedback],
            )
            for m in listed.messages
        ]

    assert await contents(copy) == await contents(sid)
    # Members are not imported: the copy is its importer's alone, and not in bob's list although
    # he wrote some of its messages.
    get = session_pb2.GetSessionRequest(session_id=copy)
    assert await status_of(bob, "GetSession", get) == grpc.StatusCode.NOT_FOUND
    assert copy not in {t.session_id for t in (await bob.threads()).threads}
    # The state's version came along: a patch expecting it applies.
    patched = await ann.call(
        "UpdateState",
        session_pb2.UpdateStateRequest(
            session_id=copy, patch_json='{"x":1}', expected_version=original.session.version
        ),
    )
    assert patched.version == original.session.version + 1


async def test_a_large_export_comes_in_pages_that_fit_together(people: dict[str, User]) -> None:
    ann = people["ann"]
    sid = room_id()
    for index in range(24):
        await ann.post(sid, f"{index} " + "x" * 60_000)
    lines, pages = await export(ann, sid)
    assert pages == 2
    assert len(lines) == 25
    assert [json.loads(line)["n"] for line in lines[1:]] == list(range(1, 25))
    imported = await ann.call(
        "ImportSession", export_pb2.ImportSessionRequest(jsonl="\n".join(lines))
    )
    assert imported.events == 24
    bad = export_pb2.ExportSessionRequest(session_id=sid, page_token="forged")
    assert await status_of(ann, "ExportSession", bad) == grpc.StatusCode.INVALID_ARGUMENT


def recorded(item: Any) -> str:
    """The author a message or feedback was recorded with: an import names its importer as
    `user` and keeps the file's name in `imported.named_user`."""
    return str(item.imported.named_user if item.HasField("imported") else item.user)


def edited(lines: list[str], index: int, **changes: Any) -> str:
    fields = json.loads(lines[index])
    fields.update(changes)
    out = list(lines)
    out[index] = json.dumps(fields)
    return "\n".join(out)


async def test_a_bad_file_is_refused_whole_with_its_line_and_stores_nothing(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    lines, _ = await export(ann, await rich_session(ann, bob))
    answer_end = next(i for i, line in enumerate(lines) if '"answer_ended"' in line)
    bad_files = {
        "no header": "\n".join(lines[1:]),
        "unknown type": edited(lines, 1, type="poll"),
        "n out of order": edited(lines, 2, n=7),
        "reply to a later event": edited(lines, 2, replyTo=5),
        "feedback on a user message": edited(lines, answer_end + 1, message=1),
        "rating": edited(lines, answer_end + 1, rating="meh"),
        "state version gap": edited(lines, 3, version=2),
        "status": edited(lines, answer_end, status="great"),
        "answer never ends": "\n".join(lines[:answer_end]),
        "not JSON": "\n".join([*lines, "{nope"]),
        "role": edited(lines, 1, role="wizard"),
        "bool as int": edited(lines, 1, time=True),
        "far future": edited(lines, 1, time=10**15),
    }
    for why, text in bad_files.items():
        target = room_id()
        request = export_pb2.ImportSessionRequest(session_id=target, jsonl=text)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ann.call("ImportSession", request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, why
        assert "line" in (refused.value.details() or "") or why == "answer never ends", why
        get = session_pb2.GetSessionRequest(session_id=target)
        assert await status_of(ann, "GetSession", get) == grpc.StatusCode.NOT_FOUND, why

    taken = room_id()
    await ann.post(taken, "mine")
    into_own = export_pb2.ImportSessionRequest(session_id=taken, jsonl="\n".join(lines))
    assert await status_of(ann, "ImportSession", into_own) == grpc.StatusCode.FAILED_PRECONDITION
    assert await status_of(bob, "ImportSession", into_own) == grpc.StatusCode.NOT_FOUND


async def test_export_and_import_over_http(people: dict[str, User], secure: SecureStack) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = await rich_session(ann, bob)
    lines, _ = await export(ann, sid)
    base = f"{secure.stack.gateway_url}/api/threads"
    headers = {"Authorization": f"Bearer {ann.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/{sid}/export") as response:
            assert response.status == 200
            assert response.content_type == "application/x-ndjson"
            body = (await response.read()).decode()
        assert body.removesuffix("\n").split("\n")[1:] == lines[1:]
        async with http.post(f"{base}/import", data=body.encode()) as response:
            assert response.status == 201
            created = await response.json()
        assert created["events"] == len(lines) - 1
        assert created["sharePath"] == f"/#t={created['sessionId']}"
        async with http.post(f"{base}/import", data=b"\xff\xfe") as response:
            assert response.status == 400
        async with http.post(f"{base}/import", data=b'{"format":"other"}') as response:
            assert response.status == 400
            assert "line 1" in (await response.json())["error"]["message"]
    bob_headers = {"Authorization": f"Bearer {bob.token}"}
    async with (
        aiohttp.ClientSession(headers=bob_headers) as http,
        http.get(f"{base}/{created['sessionId']}/export") as response,
    ):
        assert response.status == 404


async def test_feedback_on_an_appended_assistant_message_survives_the_round_trip(
    people: dict[str, User],
) -> None:
    ann = people["ann"]
    sid = room_id()
    said = await ann.call(
        "AppendMessage",
        session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_ASSISTANT, content="a canned answer"
        ),
    )
    await ann.call(
        "SetFeedback",
        session_pb2.SetFeedbackRequest(
            session_id=sid, message_seq=said.message.seq, rating=common_pb2.RATING_DOWN
        ),
    )
    lines, _ = await export(ann, sid)
    copy = await ann.call("ImportSession", export_pb2.ImportSessionRequest(jsonl="\n".join(lines)))
    again, _ = await export(ann, copy.session_id)
    assert imported_by(again[1:], ann.name) == lines[1:]
