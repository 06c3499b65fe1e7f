"""kill -9 of the gateway, the AI service and the search indexer at a seeded random moment while
six writers are mid-call (tests/support/crash.py), each restarted as the same command on the
same port or database: every acknowledged write is stored once, byte for byte, at its seq
(tests/support/ledger.py), every prompt gets one answer that ends, and the index holds each
acknowledged write once, at its seq.

Gateway writes go over REST with `clientMessageId`: a retry after a lost reply is exactly-once.
(A WebSocket prompt gets a fresh id from the gateway per frame, so a client cannot resend one
exactly-once; socket resume is covered by the gateway and scaling tests.)"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import aiohttp
import grpc
import pytest

from common.auth import mint
from deploy.stack.processes import wait_grpc_serving, wait_http_ok
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from deploy.stack.waits import async_eventually
from durablechat.v1 import common_pb2, search_pb2, search_pb2_grpc, session_pb2_grpc
from tests.support.crash import (
    KillMoment,
    Writers,
    assert_appends_kept,
    grpc_append_as,
    grpc_retryable,
    kill_amid,
    kill_and_restart,
)
from tests.support.grpc_client import SessionClient
from tests.support.ledger import Ledger, Stored

pytestmark = pytest.mark.chaos

WRITERS = 6


class Retry(Exception):
    """The gateway answered 502/503/504: the write may or may not have landed."""


def http_retryable(exc: BaseException) -> bool:
    return isinstance(exc, Retry | aiohttp.ClientError | asyncio.TimeoutError)


async def test_gateway_kill9_with_rest_writes_in_flight_keeps_every_acknowledged_write(
    own_stack: Stack, session_id: str
) -> None:
    start(own_stack, StackSpec(model=False, ai=False))
    gateway = own_stack.gateway
    assert gateway is not None
    ledger = Ledger()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def append(session: str, cid: str, content: str) -> int:
            body = {"role": "user", "content": content, "clientMessageId": cid}
            url = f"{own_stack.gateway_url}/api/chat/session/{session}/messages"
            async with http.post(url, json=body) as reply:
                if reply.status in (502, 503, 504):
                    raise Retry(reply.status)
                assert reply.status in (200, 201), await reply.text()  # 200: a retry found it
                return int((await reply.json())["seq"])

        sessions = [f"{session_id}-{i}" for i in range(3)]
        writers = Writers(ledger, append, sessions, http_retryable, count=WRITERS)

        def restart() -> None:  # the same command: same port
            gateway.start()
            wait_http_ok(gateway, f"{own_stack.gateway_url}/healthz")

        await kill_and_restart(writers, "gateway kill -9", gateway.kill9, restart)
    client = SessionClient(own_stack.session_addr)
    try:
        checked = await assert_appends_kept(client, ledger)
    finally:
        await client.close()
    print(f"{checked} acknowledged writes kept, {writers.retries} retries")


async def test_ai_service_kill9_with_answers_in_flight_keeps_every_prompt_and_ends_every_answer(
    own_stack: Stack, session_id: str
) -> None:
    """Prompts are the writes (acknowledged: the user message's seq); each starts an answer,
    so answers stream when the AI service dies, and more prompts come while it is down. Each
    prompt is stored once and gets exactly one answer, which ends (completed, or failed once its
    retries ran out while the AI service was down), none stuck."""
    spec = StackSpec(token_delay_ms=2, gateway=False, pod_env={"MAX_QUEUED_PROMPTS": "1000"})
    start(own_stack, spec)
    ai = own_stack.ai
    assert ai is not None
    client = SessionClient(own_stack.session_addr)
    ledger = Ledger()

    async def prompt(session: str, cid: str, content: str) -> int:
        reply = await client.prompt(session, f"{content} tokens=5", client_id=cid)
        return int(reply.user_message.seq)

    sessions = [f"{session_id}-{i}" for i in range(WRITERS)]  # one writer each: queues stay short
    writers = Writers(ledger, prompt, sessions, grpc_retryable, count=WRITERS)
    try:
        writers.start()
        await kill_amid(writers, KillMoment("AI service kill -9"), ai.kill9, after_acked=6)
        await writers.acked(ledger.count() + 3)  # prompts taken while the AI service is down
        await writers.stop()
        ai.start()  # the same command: same port
        await asyncio.to_thread(wait_grpc_serving, ai, own_stack.ai_addr)
        for session in sessions:
            stored = await async_eventually(partial(answered, client, session, ledger), 30)
            prompts = [Stored(m.seq, m.content.removesuffix(" tokens=5"), m.client_message_id)
                       for m in stored if m.role == common_pb2.ROLE_USER]  # fmt: skip
            ledger.assert_kept(session, prompts)
    finally:
        await writers.cancel()
        await client.close()
    print(f"{ledger.count()} acknowledged prompts kept, {writers.retries} retries")


async def answered(client: SessionClient, session: str, ledger: Ledger) -> Any:
    """The session's messages once every prompt has one ended answer; falsy until then."""
    stored = await client.list_all(session)
    answers = [m for m in stored if m.role == common_pb2.ROLE_ASSISTANT]
    ended = {common_pb2.ANSWER_STATUS_COMPLETED, common_pb2.ANSWER_STATUS_FAILED}
    if len(answers) < ledger.count(session):
        return None
    assert len(answers) == ledger.count(session), "a prompt got two answers"
    assert len({a.answer_seq for a in answers}) == len(answers)
    return stored if all(a.answer_status in ended for a in answers) else None


async def test_search_indexer_kill9_with_writes_in_flight_indexes_each_write_once(
    own_stack: Stack, session_id: str
) -> None:
    spec = StackSpec(
        auth=True, search=True, model=False, ai=False, gateway=False,
        pod_env={"RATE_USER_PER_MIN": "0"}, search_env={"SEARCH_RATE_PER_MIN": "0"},
    )  # fmt: skip
    start(own_stack, spec)
    search, secret = own_stack.search, own_stack.auth_secret_file
    assert search is not None and secret is not None
    metadata = (("authorization", f"Bearer {mint(secret.read_bytes().strip(), 'ann', 600)}"),)
    ledger = Ledger()
    async with grpc.aio.insecure_channel(own_stack.session_addr) as channel:
        append = grpc_append_as(session_pb2_grpc.SessionServiceStub(channel), metadata)
        sessions = [f"{session_id}-{i}" for i in range(3)]
        writers = Writers(ledger, append, sessions, grpc_retryable, count=WRITERS)
        # the same command: same port, same database
        await kill_and_restart(writers, "search indexer kill -9", search.kill9, search.start)
    await asyncio.to_thread(wait_grpc_serving, search, own_stack.search_addr)
    async with grpc.aio.insecure_channel(own_stack.search_addr) as channel:
        index = search_pb2_grpc.SearchServiceStub(channel)

        async def hits(session: str, word: str) -> list[int]:
            request = search_pb2.SearchMessagesRequest(query=word, session_id=session, limit=100)
            reply = await index.SearchMessages(request, metadata=metadata, timeout=10)
            return [h.seq for h in reply.hits]

        async def indexed() -> bool:
            for session, writes in ledger.writes.items():
                for write in writes.values():
                    word = write.content.rsplit(" ", 1)[1]  # the write's own random word
                    if await hits(session, word) != [write.seq]:
                        return False
            return True

        await async_eventually(indexed, 30)
    print(f"{ledger.count()} acknowledged writes indexed once each")
