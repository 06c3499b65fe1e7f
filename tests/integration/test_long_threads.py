"""Long threads stay cheap (log/snapshot.py, store/sessions.py): an answer's delta batches are
gone once its end is stored, a cursor inside a finished answer still resumes exactly, and a long
thread activates from its snapshot and a bounded tail with the same results as from its whole
log: GetSession, history pages, branches, edits, regenerations, exports, resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from bench.activation import write_thread
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import (
    branches_pb2,
    common_pb2,
    export_pb2,
    session_pb2,
    session_pb2_grpc,
)
from session_service.log import snapshot
from session_service.store.keys import lease_key, log_key, snapshot_key
from tests.support.grpc_client import SessionClient, events_until

IDLE_MS = "300"


@pytest.fixture(scope="module")
def long_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("long-threads"))
    try:
        running.start_redis()
        running.start_model(token_delay_ms=0)
        running.start_ai()
        running.start_session(SESSION_IDLE_MS=IDLE_MS)
        yield running
    finally:
        running.close()


@pytest.fixture
async def client(long_stack: Stack) -> Any:
    made = SessionClient(long_stack.session_addr)
    try:
        yield made
    finally:
        await made.close()


def redis_of(stack: Stack) -> Any:
    assert stack.redis is not None
    return stack.redis.client()


def passivated(stack: Stack, sid: str) -> None:
    """Waits until the idle session left memory (its lease released)."""
    with redis_of(stack) as r:
        eventually(lambda: not r.exists(lease_key(sid)), timeout=30)


def logged(stack: Stack, sid: str, msg: str) -> list[dict[str, Any]]:
    """The session service's log entries `msg` about session `sid`."""
    assert stack.session is not None
    lines = stack.session.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in entries if e.get("msg") == msg and e.get("session_id") == sid]


def activations(stack: Stack, sid: str) -> list[dict[str, Any]]:
    return logged(stack, sid, "session activated")


def history_loads(stack: Stack, sid: str) -> int:
    """How often a windowed image read its whole history into memory."""
    return len(logged(stack, sid, "session history loaded"))


async def answered(client: SessionClient, sid: str, text: str) -> Any:
    """Sends a prompt and waits for its answer's end; returns the SendPrompt reply."""
    stream = client.subscribe(sid)
    try:
        sent = await client.prompt(sid, text)
        events = await events_until(stream, "answer_ended")
        assert events[-1].answer_ended.message.answer_seq == sent.answer_seq
    finally:
        stream.cancel()
    return sent


async def every_page(stub: Any, sid: str, **kwargs: Any) -> list[bytes]:
    """Every history page of the session (small pages: many round trips), serialized."""
    out: list[bytes] = []
    after = 0
    while True:
        page = await stub.ListMessages(
            session_pb2.ListMessagesRequest(session_id=sid, after_seq=after, limit=97, **kwargs),
            timeout=30,
        )
        out += [m.SerializeToString() for m in page.messages]
        if not page.has_more:
            return out
        after = page.messages[-1].seq


async def exported(stub: Any, sid: str) -> list[dict[str, Any]]:
    """The export's lines, without the header's export time."""
    text, token = "", ""
    while True:
        reply = await stub.ExportSession(
            export_pb2.ExportSessionRequest(session_id=sid, page_token=token), timeout=30
        )
        text += reply.jsonl
        token = reply.next_page_token
        if not token:
            break
    lines = [json.loads(line) for line in text.removesuffix("\n").split("\n")]
    lines[0].pop("exportedAt", None)
    return lines


def comparable(session: session_pb2.Session) -> bytes:
    """GetSession's reply without what differs per activation (epoch, access time)."""
    copy = session_pb2.Session()
    copy.CopyFrom(session)
    copy.ClearField("epoch")
    copy.ClearField("last_accessed_at")
    return copy.SerializeToString()


async def history(stack: Stack, sid: str) -> tuple[Any, ...]:
    """The session and every history page (activating it if it is not)."""
    async with grpc.aio.insecure_channel(stack.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        got = await stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), timeout=30)
        return (
            comparable(got.session),
            await every_page(stub, sid),
            await every_page(stub, sid, all_branches=True),
        )


async def views(stack: Stack, sid: str) -> tuple[Any, ...]:
    """What a client can read of the whole thread: `history`, then the export."""
    async with grpc.aio.insecure_channel(stack.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        return (*await history(stack, sid), await exported(stub, sid))


async def test_a_finished_answer_leaves_no_delta_batches_in_redis(long_stack, client, session_id):
    for i in range(4):
        await answered(client, session_id, f"question {i} tokens=50")
    with redis_of(long_stack) as r:
        assert r.llen(log_key(session_id)) == 3 * 4  # prompt, answer start, answer end
        assert list(r.scan_iter(match=f"dc:{{{session_id}}}:ans:*")) == []


async def test_a_cursor_inside_a_finished_answer_resumes_with_its_final_message_exactly(
    client, session_id
):
    stream = client.subscribe(session_id)
    try:
        sent = await client.prompt(session_id, "long answer tokens=300")
        live = await events_until(stream, "answer_ended")
    finally:
        stream.cancel()
    deltas = [e for e in live if e.WhichOneof("kind") == "answer_delta"]
    final = live[-1]
    assert len(deltas) > 2, "the answer came in one batch: nothing to resume inside"
    text = "".join(d.answer_delta.text for d in deltas)
    assert final.answer_ended.message.content == text
    for offset in (1, len(deltas) // 2, len(deltas) - 1, len(deltas)):
        resumed = client.subscribe(session_id, after_seq=sent.answer_seq, after_offset=offset)
        try:
            replay = await events_until(resumed, "caught_up")
        finally:
            resumed.cancel()
        # No delta (the batches are compacted away): the final message, byte for byte the one
        # live subscribers got, whose text replaces the partial text the client holds.
        assert [e.SerializeToString() for e in replay[:-1]] == [final.SerializeToString()]
        assert replay[-1].seq == final.seq and replay[-1].offset == 0


async def test_a_long_thread_activates_from_a_bounded_tail_with_the_same_results(
    long_stack, client, session_id
):
    length = await write_thread(long_stack.redis_url, session_id, 1000)
    whole = await views(long_stack, session_id)  # no snapshot yet: from the whole log
    passivated(long_stack, session_id)  # which stores the first snapshot
    with redis_of(long_stack) as r:
        assert int(r.hget(snapshot_key(session_id), "seq")) == length
    got = await client.get(session_id)
    assert activations(long_stack, session_id)[-1]["loaded"] == snapshot.WINDOW_EVENTS
    assert comparable(got) == whole[0]
    assert await history(long_stack, session_id) == whole[:3]  # older pages read from Redis
    assert history_loads(long_stack, session_id) == 0
    assert await views(long_stack, session_id) == whole  # the export reads the whole log
    assert history_loads(long_stack, session_id) == 1
    passivated(long_stack, session_id)
    assert await views(long_stack, session_id) == whole
    assert [a["loaded"] for a in activations(long_stack, session_id)] == [
        length,
        snapshot.WINDOW_EVENTS,
        snapshot.WINDOW_EVENTS,
    ]


async def test_prompts_resumes_and_old_client_ids_on_a_windowed_thread(
    long_stack, client, session_id
):
    length = await write_thread(long_stack.redis_url, session_id, 300)
    await client.get(session_id)
    passivated(long_stack, session_id)
    await client.get(session_id)  # windowed
    sent = await answered(client, session_id, "one more tokens=20")
    assert sent.user_message.seq == length + 1 and not sent.duplicate
    stream = client.subscribe(session_id, after_seq=5)  # a cursor before the window
    try:
        replay = await events_until(stream, "caught_up")
    finally:
        stream.cancel()
    assert [e.seq for e in replay[:-1]] == list(range(6, length + 4))
    assert replay[-1].seq == length + 3
    rated = await client.stub.SetFeedback(
        session_pb2.SetFeedbackRequest(
            session_id=session_id, message_seq=6, rating=common_pb2.RATING_UP, user="ann"
        ),
        timeout=10,
    )  # the answer of prompt 1, before the window
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.stub.SetFeedback(
            session_pb2.SetFeedbackRequest(
                session_id=session_id, message_seq=4, rating=common_pb2.RATING_UP
            ),
            timeout=10,
        )  # a user message
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reply = await client.stub.AppendMessage(
        session_pb2.AppendMessageRequest(
            session_id=session_id, role=common_pb2.ROLE_USER, content="re: 1", reply_to=4
        ),
        timeout=10,
    )
    assert (rated.seq, reply.message.seq) == (length + 4, length + 5)
    page = await client.stub.ListMessages(
        session_pb2.ListMessagesRequest(session_id=session_id, after_seq=5, limit=1), timeout=10
    )
    assert [(m.seq, [f.user for f in m.feedback]) for m in page.messages] == [(6, ["ann"])]
    assert history_loads(long_stack, session_id) == 0  # read from Redis, not kept
    again = await client.stub.SendPrompt(
        session_pb2.SendPromptRequest(session_id=session_id, content="x", client_message_id="q3"),
        timeout=10,
    )  # the writer's client id of prompt 3, long before the window
    assert again.duplicate and again.user_message.seq == 10 and again.answer_seq == 11


async def test_branches_edits_regenerations_and_exports_on_a_windowed_thread(
    long_stack, client, session_id
):
    await write_thread(long_stack.redis_url, session_id, 300)
    await client.get(session_id)
    passivated(long_stack, session_id)
    await client.get(session_id)  # windowed: the old messages are not in memory
    edit = await client.stub.EditMessage(
        branches_pb2.EditMessageRequest(
            session_id=session_id, message_seq=4, content="edited tokens=5"
        ),
        timeout=30,
    )
    stream = client.subscribe(session_id, after_seq=edit.answer_seq)
    try:
        await events_until(stream, "answer_ended")
    finally:
        stream.cancel()
    regenerated = await client.stub.RegenerateAnswer(
        branches_pb2.RegenerateAnswerRequest(session_id=session_id, message_seq=9), timeout=30
    )
    stream = client.subscribe(session_id, after_seq=regenerated.answer_seq)
    try:
        await events_until(stream, "answer_ended")
    finally:
        stream.cancel()
    await client.stub.SelectBranch(
        branches_pb2.SelectBranchRequest(session_id=session_id, message_seq=600), timeout=30
    )
    windowed = await views(long_stack, session_id)
    passivated(long_stack, session_id)
    with redis_of(long_stack) as r:
        r.delete(snapshot_key(session_id))  # the next activation reads the whole log
    assert await views(long_stack, session_id) == windowed
    branched = session_pb2.Session.FromString(windowed[0])
    assert len(branched.branch_leaves) == 3
    assert {m.role for m in map(common_pb2.Message.FromString, windowed[2])} == {
        common_pb2.ROLE_USER,
        common_pb2.ROLE_ASSISTANT,
    }


async def test_after_kill9_the_owner_activates_from_the_snapshot_it_stored_while_serving(
    long_stack, session_id
):
    length = await write_thread(long_stack.redis_url, session_id, 300)
    client = SessionClient(long_stack.session_addr)
    try:
        before = await history(long_stack, session_id)  # the whole log: no snapshot yet
        appended = [
            await client.append(session_id, f"more {i}", client_id=f"m{i}") for i in range(3)
        ]
        with redis_of(long_stack) as r:  # the first write was due a snapshot (the log is long)
            eventually(lambda: r.hget(snapshot_key(session_id), "seq") == str(length + 1))
    finally:
        await client.close()
    assert long_stack.session is not None
    long_stack.session.kill9()  # no passivation: the snapshot it stored while serving is all
    long_stack.start_session(SESSION_IDLE_MS=IDLE_MS)
    client = SessionClient(long_stack.session_addr)
    try:
        after = await history(long_stack, session_id)
        repeated = await client.append(session_id, "again", client_id="q7")  # before the window
    finally:
        await client.close()
    assert activations(long_stack, session_id)[-1]["loaded"] == snapshot.WINDOW_EVENTS + 2
    assert after[1] == before[1] + [a.message.SerializeToString() for a in appended]
    assert repeated.duplicate and repeated.message.seq == 3 * 7 + 1
