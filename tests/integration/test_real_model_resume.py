"""Kill the owner mid-answer while a REAL model streams it: SmolLM2-135M-Instruct served by
llama.cpp's llama-server (tests/support/llama_server.py), two session pods, the gateway, two gRPC
subscribers and one WebSocket on the thread. The owner is killed with SIGKILL once text has
arrived; the other pod takes the session over and goes on with the answer.

Both kinds of model (ANSWER_CONTINUE, docs/resume.md):
- prefill: llama-server continues the stored text as a trailing assistant turn, asked to stream
  only the new text (`continue_final_message`, `add_generation_prompt: false`). The stored answer
  is the stored prefix plus a continuation that does not repeat it (without those fields
  llama-server's first delta repeats the prefix), and with greedy sampling it equals the
  uninterrupted answer to the same prompt: one coherent generation.
- restart: llama-server started with `--no-prefill-assistant` (a model that answers afresh, as
  hosted chat APIs do). Every client is told to replace (AnswerRestarted, `[RESTART]`); the
  interrupted text is kept as an INTERRUPTED version; the stored answer is one fresh generation
  (with greedy sampling: the uninterrupted answer).

In both, every watcher ends showing exactly the stored answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ai_service.config import DEFAULT_BATCH_MAX_CHUNKS
from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started
from durablechat.v1 import common_pb2, session_pb2
from tests.support.answer_watchers import GrpcWatcher, WsWatcher
from tests.support.grpc_client import SessionClient
from tests.support.llama_server import ALIAS, LlamaServer, llama_server
from tests.support.ws_frames import ws_url

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]

PODS = ("pod-a", "pod-b")
PROMPT = "Give three reasons to exercise, with a short paragraph for each."
MAX_TOKENS = 400
KILL_AFTER_CHARS = 80
"""The owner is killed once a watcher has this much of the answer (a few batches; the whole
answer to PROMPT is about 176 tokens, 900 characters, and ends by itself before MAX_TOKENS)."""
ANSWER_TIMEOUT_S = 90.0


@dataclass
class Run:
    """What one kill-mid-answer run left: the stored answer and its versions, what each watcher
    showed, the uninterrupted answer to the same prompt, and the resumed call's offset."""

    reference: str
    answer: common_pb2.Message
    versions: list[common_pb2.Message]
    watchers: list[GrpcWatcher]
    ws: WsWatcher
    killed_at: float
    resumed_offset: int


def stack_spec(model: LlamaServer) -> StackSpec:
    mode = "prefill" if model.prefill else "restart"
    return StackSpec(
        pods=PODS,
        model_url=model.url,
        ai_env={"OPENAI_MODEL": ALIAS, "ANSWER_CONTINUE": mode, "AI_MAX_TOKENS": str(MAX_TOKENS)},
    )


def owned_by(pod: str, tag: str) -> str:
    return next(s for s in (f"{tag}-{i}" for i in range(100)) if HashRing(PODS).owner(s) == pod)


def resumed_offset(stack: Stack, sid: str) -> int:
    """The stored batches the new owner went on from (its "answer resumed" log line)."""
    for line in stack.pods["pod-b"].log_path.read_text().splitlines():
        if '"answer resumed"' in line and sid in line:
            return int(json.loads(line)["offset"])
    raise AssertionError("pod-b did not resume the answer")


async def answer_of(client: SessionClient, sid: str) -> str:
    """Prompts on a fresh session and waits for the whole answer, no kill."""
    sent = await client.prompt(sid, PROMPT)
    watcher = GrpcWatcher(client, sid, sent.answer_seq)
    await asyncio.wait_for(watcher.run(), ANSWER_TIMEOUT_S)
    assert watcher.final is not None
    return watcher.final.content


async def kill_mid_answer(workdir: Path, model: LlamaServer) -> Run:
    """Prompts on a session of pod-a's, kills pod-a once KILL_AFTER_CHARS have arrived, waits
    for every watcher to see the answer end; checks what both kinds share (the answer completed,
    every watcher ends with the stored text)."""
    with started(workdir, stack_spec(model)) as stack:
        client = SessionClient(stack.pod_addrs["pod-b"])
        sid = owned_by("pod-a", "real")
        try:
            reference = await answer_of(client, owned_by("pod-b", "reference"))
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(ws_url(stack, sid)) as socket,
            ):
                ws = WsWatcher(socket)
                sent = await client.prompt(sid, PROMPT, client_id="p1")
                watchers = [GrpcWatcher(client, sid, sent.answer_seq) for _ in range(2)]
                tasks = [asyncio.create_task(w.run()) for w in watchers]
                tasks.append(asyncio.create_task(ws.run()))
                while len(watchers[0].text) < KILL_AFTER_CHARS:
                    watchers[0].grew.clear()
                    await asyncio.wait_for(watchers[0].grew.wait(), ANSWER_TIMEOUT_S)
                assert watchers[0].final is None, "the answer ended before the kill"
                stack.pods["pod-a"].kill9()
                killed_at = time.monotonic() - ws.started
                await asyncio.wait_for(asyncio.gather(*tasks), ANSWER_TIMEOUT_S)
            stored = await client.list_all(sid)
            every = await client.stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id=sid, all_branches=True, limit=100)
            )
        finally:
            await client.close()
        versions = [m for m in every.messages if m.answer_seq == sent.answer_seq]
        offset = resumed_offset(stack, sid)
    run = Run(reference, stored[-1], versions, watchers, ws, killed_at, offset)
    report(run)
    assert run.answer.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    check_watchers(run)
    return run


def report(run: Run) -> None:
    """What a WebSocket client got around the kill (shown with `pytest -s`)."""
    print(f"\nresumed from batch {run.resumed_offset}; regenerated_tokens"
          f" {run.answer.usage.regenerated_tokens}; frames around the kill (t=0):")  # fmt: skip
    print(run.ws.transcript(run.killed_at))


def check_watchers(run: Run) -> None:
    """Every client ends showing exactly the stored answer."""
    for watcher in run.watchers:
        assert watcher.resubscribed >= 1, "the kill did not break this watcher's stream"
        assert watcher.final is not None and watcher.final.content == run.answer.content
        assert watcher.text == run.answer.content, "a watcher's text is not what is stored"
    assert run.ws.shown == run.answer.content, run.ws.frames


@pytest.fixture
def prefill_model(tmp_path: Path) -> Iterator[LlamaServer]:
    with llama_server(tmp_path, prefill=True) as model:
        yield model


@pytest.fixture
def restart_model(tmp_path: Path) -> Iterator[LlamaServer]:
    with llama_server(tmp_path, prefill=False) as model:
        yield model


async def test_prefill_a_real_model_continues_the_stored_answer_into_one_generation(
    prefill_model: LlamaServer, tmp_path: Path
) -> None:
    run = await kill_mid_answer(tmp_path, prefill_model)
    answer = run.answer.content
    assert len(run.versions) == 1, "a prefill resume made a second version"
    assert not any(w.restarts for w in run.watchers), "a prefill resume told clients to replace"
    assert "[RESTART]" not in [frame for _, frame in run.ws.frames]
    prefix = run.watchers[0].prefix(run.resumed_offset)
    assert prefix and answer.startswith(prefix)
    continuation = answer[len(prefix) :]
    assert continuation, "the model added nothing after the stored text"
    assert not continuation.startswith(prefix), "the model's first delta repeated the prefix"
    assert answer == run.reference, "not the one generation an uninterrupted answer is"
    # Generated twice: what the first call had sent on beyond the stored text (at most a batch).
    assert run.answer.usage.regenerated_tokens <= DEFAULT_BATCH_MAX_CHUNKS


async def test_restart_a_real_model_answers_afresh_and_every_client_replaces(
    restart_model: LlamaServer, tmp_path: Path
) -> None:
    run = await kill_mid_answer(tmp_path, restart_model)
    answer = run.answer.content
    assert [v.answer_status for v in run.versions] == [
        common_pb2.ANSWER_STATUS_INTERRUPTED,
        common_pb2.ANSWER_STATUS_COMPLETED,
    ]
    interrupted = run.versions[0]
    assert interrupted.content == run.watchers[0].prefix(run.resumed_offset)
    for watcher in run.watchers:
        assert [m.content for m in watcher.restarts] == [interrupted.content]
    frames = [frame for _, frame in run.ws.frames]
    assert frames.count("[RESTART]") == 1 and frames.count("[LOADING]") == 1, frames
    assert answer == run.reference, "not one fresh generation of the same prompt"
    # Everything the first call streamed was generated again (a chunk holds at least one token).
    assert run.answer.usage.regenerated_tokens >= run.resumed_offset
