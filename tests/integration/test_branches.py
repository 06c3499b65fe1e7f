"""Branches (docs/branches.md) over real gRPC with AUTH_MODE=jwt and two pods: an edit and two
regenerations keep every branch, each loads exactly (also after the session is reloaded from
Redis on another activation), the model sees only the prompt's branch, branches can be selected,
exported and imported, and forked into a new session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from deploy.stack.waits import async_eventually
from durablechat.v1 import (
    access_pb2,
    branches_pb2,
    cluster_pb2,
    cluster_pb2_grpc,
    export_pb2,
    session_pb2,
)
from tests.support.secure import PODS, SecureStack, User, room_id, secure_stack, status_of
from tests.support.user_calls import ended, export, imported_by, prompt

LONG = " ".join(["word"] * 200)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("branches")) as running:
        yield running


async def branch(user: User, sid: str, through: int = 0, **kwargs: Any) -> list[tuple[Any, ...]]:
    reply = await user.call(
        "ListMessages",
        session_pb2.ListMessagesRequest(session_id=sid, branch_seq=through, **kwargs),
    )
    return [(m.seq, m.role, m.content, m.parent_seq) for m in reply.messages]


async def session(user: User, sid: str) -> Any:
    return (await user.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))).session


async def build(ann: User) -> tuple[str, dict[str, Any]]:
    """P1 E1 P2 E2; P2 edited (P3, answered E3); E3 regenerated twice (E4, E5)."""
    sid = room_id()
    p1, e1 = await prompt(ann, sid, "first tokens=3")
    p2, e2 = await prompt(ann, sid, f"second {LONG} tokens=3")
    edit = await ann.call(
        "EditMessage",
        branches_pb2.EditMessageRequest(
            session_id=sid, message_seq=p2.seq, content="short tokens=4"
        ),
    )
    p3, e3 = edit.message, await ended(ann, sid, edit.answer_seq)
    regenerated = []
    for _ in range(2):
        again = await ann.call(
            "RegenerateAnswer",
            branches_pb2.RegenerateAnswerRequest(session_id=sid, message_seq=e3.seq),
        )
        regenerated.append(await ended(ann, sid, again.answer_seq))
    e4, e5 = regenerated
    return sid, {"p1": p1, "e1": e1, "p2": p2, "e2": e2, "p3": p3, "e3": e3, "e4": e4, "e5": e5}


def line(*messages: Any) -> list[tuple[Any, ...]]:
    parents = [0] + [m.seq for m in messages[:-1]]
    return [(m.seq, m.role, m.content, p) for m, p in zip(messages, parents, strict=True)]


async def test_an_edit_and_two_regenerations_keep_every_branch_exactly(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    sid, m = await build(ann)
    p1, e1, p2, e2, p3, e3, e4, e5 = (
        m[k] for k in ("p1", "e1", "p2", "e2", "p3", "e3", "e4", "e5")
    )
    assert p3.parent_seq == e1.seq and p3.content == "short tokens=4"
    assert [e.content for e in (e3, e4, e5)] == ["tok0 tok1 tok2 tok3"] * 3
    expected = {
        e2.seq: line(p1, e1, p2, e2),
        e3.seq: line(p1, e1, p3, e3),
        e4.seq: [*line(p1, e1, p3), (e4.seq, e4.role, e4.content, p3.seq)],
        e5.seq: [*line(p1, e1, p3), (e5.seq, e5.role, e5.content, p3.seq)],
    }

    async def check() -> None:
        s = await session(ann, sid)
        assert list(s.branch_leaves) == sorted(expected)
        assert s.head_seq == e5.seq
        assert await branch(ann, sid) == expected[e5.seq]  # the active branch
        for leaf, messages in expected.items():
            assert await branch(ann, sid, leaf) == messages
        assert await branch(ann, sid, p2.seq) == expected[e2.seq]  # through an inner message
        everything = await branch(ann, sid, all_branches=True)
        assert [seq for seq, *_ in everything] == sorted(
            {x[0] for v in expected.values() for x in v}
        )

    await check()
    # The model saw the edited prompt's branch only: not the long P2 nor its answer.
    assert e2.usage.prompt_tokens > 200 > e3.usage.prompt_tokens
    assert e4.usage.prompt_tokens == e3.usage.prompt_tokens

    # The tree is rebuilt from the log by the next owner: move the session and read again.
    for pod in PODS:
        async with grpc.aio.insecure_channel(secure.stack.pod_addrs[pod]) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            request = cluster_pb2.HandOffRequest(session_id=sid)
            await stub.HandOff(request, timeout=10, metadata=secure.stack.cluster_metadata)
    await check()


async def test_selecting_a_branch_makes_it_the_one_new_messages_continue(
    people: dict[str, User],
) -> None:
    ann = people["ann"]
    sid, m = await build(ann)
    selected = await ann.call(
        "SelectBranch", branches_pb2.SelectBranchRequest(session_id=sid, message_seq=m["p2"].seq)
    )
    assert selected.head_seq == m["e2"].seq and selected.seq
    assert (await session(ann, sid)).head_seq == m["e2"].seq
    again = await ann.call(
        "SelectBranch", branches_pb2.SelectBranchRequest(session_id=sid, message_seq=m["e2"].seq)
    )
    assert again.seq == 0  # already active: nothing stored
    posted = (await ann.post(sid, "continuing the old branch")).message
    assert posted.parent_seq == m["e2"].seq
    assert [x[0] for x in await branch(ann, sid)][-2:] == [m["e2"].seq, posted.seq]


async def test_branches_survive_export_and_import_and_a_fork_copies_one(
    people: dict[str, User],
) -> None:
    ann, bob = people["ann"], people["bob"]
    sid, m = await build(ann)
    lines, _ = await export(ann, sid)
    copy = await ann.call("ImportSession", export_pb2.ImportSessionRequest(jsonl="\n".join(lines)))
    again, _ = await export(ann, copy.session_id)
    assert imported_by(again[1:], ann.name) == lines[1:]  # (docs/export.md, "Authorship")
    original, restored = await session(ann, sid), await session(ann, copy.session_id)
    assert len(restored.branch_leaves) == len(original.branch_leaves) == 4
    for leaf_a, leaf_b in zip(original.branch_leaves, restored.branch_leaves, strict=True):
        mine = [x[1:3] for x in await branch(ann, sid, leaf_a)]
        theirs = [x[1:3] for x in await branch(ann, copy.session_id, leaf_b)]
        assert mine == theirs

    fork = await ann.call(
        "ForkSession", branches_pb2.ForkSessionRequest(session_id=sid, at_seq=m["e4"].seq)
    )
    assert fork.role == access_pb2.ACCESS_ROLE_OWNER and fork.events > 0
    forked = await session(ann, fork.session_id)
    assert len(forked.branch_leaves) == 1
    contents = [(role, text) for _, role, text, _ in await branch(ann, fork.session_id)]
    user, assistant = m["p1"].role, m["e1"].role
    assert contents == [
        (user, "first tokens=3"),
        (assistant, m["e1"].content),
        (user, "short tokens=4"),
        (assistant, m["e4"].content),
    ]
    get = session_pb2.GetSessionRequest(session_id=fork.session_id)
    assert await status_of(bob, "GetSession", get) == grpc.StatusCode.NOT_FOUND
    refused = branches_pb2.ForkSessionRequest(session_id=sid, at_seq=m["e4"].seq)
    assert await status_of(bob, "ForkSession", refused) == grpc.StatusCode.NOT_FOUND


async def test_bad_branch_requests_are_refused_and_store_nothing(people: dict[str, User]) -> None:
    ann, bob = people["ann"], people["bob"]
    sid, m = await build(ann)
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_VIEWER)
    before = (await session(ann, sid)).last_seq
    invalid: list[tuple[str, Any]] = [
        (
            "EditMessage",
            branches_pb2.EditMessageRequest(session_id=sid, message_seq=m["e1"].seq, content="x"),
        ),
        (
            "EditMessage",
            branches_pb2.EditMessageRequest(session_id=sid, message_seq=999, content="x"),
        ),
        ("EditMessage", branches_pb2.EditMessageRequest(session_id=sid, message_seq=m["p1"].seq)),
        (
            "RegenerateAnswer",
            branches_pb2.RegenerateAnswerRequest(session_id=sid, message_seq=m["p1"].seq),
        ),
        (
            "SelectBranch",
            branches_pb2.SelectBranchRequest(session_id=sid, message_seq=m["e1"].answer_seq),
        ),
        ("ListMessages", session_pb2.ListMessagesRequest(session_id=sid, branch_seq=999)),
        ("ForkSession", branches_pb2.ForkSessionRequest(session_id=sid)),
        ("ForkSession", branches_pb2.ForkSessionRequest(session_id=sid, at_seq=999)),
    ]
    for method, request in invalid:
        assert await status_of(ann, method, request) == grpc.StatusCode.INVALID_ARGUMENT, method
    for method, request in [
        (
            "EditMessage",
            branches_pb2.EditMessageRequest(session_id=sid, message_seq=m["p1"].seq, content="x"),
        ),
        (
            "RegenerateAnswer",
            branches_pb2.RegenerateAnswerRequest(session_id=sid, message_seq=m["e1"].seq),
        ),
        ("SelectBranch", branches_pb2.SelectBranchRequest(session_id=sid, message_seq=m["e2"].seq)),
    ]:
        assert await status_of(bob, method, request) == grpc.StatusCode.PERMISSION_DENIED, method
    assert (await session(ann, sid)).last_seq == before


async def test_branches_over_http(people: dict[str, User], secure: SecureStack) -> None:
    ann = people["ann"]
    sid = room_id()
    p1, e1 = await prompt(ann, sid, "hello tokens=2")
    api = f"{secure.stack.gateway_url}/api/chat/session/{sid}"
    headers = {"Authorization": f"Bearer {ann.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def post(url: str, body: object = None) -> tuple[int, Any]:
            async with http.post(url, json=body) as response:
                return response.status, await response.json()

        async def get(url: str) -> Any:
            async with http.get(url) as response:
                assert response.status == 200
                return await response.json()

        status, edited = await post(f"{api}/messages/{p1.seq}/edit", {"content": "hi tokens=3"})
        assert status == 201 and edited["message"]["content"] == "hi tokens=3"
        await ended(ann, sid, edited["answerSeq"])
        status, regenerated = await post(f"{api}/messages/{e1.seq}/regenerate")
        assert status == 201
        again = await ended(ann, sid, regenerated["answerSeq"])
        assert [m["seq"] for m in (await get(f"{api}/messages"))["messages"]] == [p1.seq, again.seq]
        old = await get(f"{api}/messages?branch={p1.seq}")
        assert [m["content"] for m in old["messages"]] == ["hello tokens=2", again.content]
        everything = await get(f"{api}/messages?allBranches=true")
        assert len(everything["messages"]) == 5
        status, selected = await post(f"{api}/branch", {"messageSeq": edited["message"]["seq"]})
        assert status == 200 and selected["headSeq"] == edited["answerSeq"] + 1
        base = f"{secure.stack.gateway_url}/api/threads/{sid}"
        status, fork = await post(f"{base}/fork", {"atSeq": p1.seq})
        assert status == 201 and fork["events"] == 1
        for url, body in [
            (f"{api}/messages/{e1.seq}/edit", {"content": "answers cannot be edited"}),
            (f"{api}/messages/{p1.seq}/edit", {"text": "x"}),
            (f"{api}/messages/{p1.seq}/regenerate", None),
            (f"{api}/branch", {"messageSeq": 0}),
            (f"{base}/fork", {"atSeq": "1"}),
        ]:
            status, error = await post(url, body)
            assert status == 400, (url, body, error)


async def test_a_regeneration_is_charged_to_whoever_asked_for_it(people: dict[str, User]) -> None:
    ann, bob = people["ann"], people["bob"]
    sid = room_id()
    _, first = await prompt(ann, sid, "yours tokens=3")
    await ann.set_member(sid, bob.name, access_pb2.ACCESS_ROLE_MEMBER)

    async def answers(user: User) -> int:
        reply = await user.call("GetUserUsage", session_pb2.GetUserUsageRequest())
        return int(reply.answers)

    await async_eventually(lambda: _equals(answers(ann), 1))
    again = await bob.call(
        "RegenerateAnswer",
        branches_pb2.RegenerateAnswerRequest(session_id=sid, message_seq=first.seq),
    )
    await ended(bob, sid, again.answer_seq)
    await async_eventually(lambda: _equals(answers(bob), 1))
    assert await answers(ann) == 1


async def _equals(value: Any, wanted: int) -> bool:
    return bool(await value == wanted)
