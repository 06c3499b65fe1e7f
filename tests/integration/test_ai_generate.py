"""Generate over gRPC against `python -m ai_service` and the dev model, both real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from ai_service.config import HTTP_CLIENTS
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import ai_pb2, ai_pb2_grpc, common_pb2

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def ai_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The AI service in front of a dev model that streams as fast as it can; open (no cluster
    key, AUTH_MODE=off): these tests call it as a pod would (the key: test_admin_plane.py)."""
    stack = Stack(tmp_path_factory.mktemp("ai"))
    try:
        stack.start_model(token_delay_ms=0)
        stack.start_ai(CLUSTER_SECRET_FILE="")
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def ai_addr(ai_stack: Stack) -> str:
    return ai_stack.ai_addr


@pytest.fixture(scope="module")
def ai_log(ai_stack: Stack) -> Path:
    assert ai_stack.ai is not None
    return ai_stack.ai.log_path


@pytest.fixture
async def channel(ai_addr: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(ai_addr) as channel:
        yield channel


def request(
    *turns: tuple[common_pb2.Role.ValueType, str], max_tokens: int = 0
) -> ai_pb2.GenerateRequest:
    return ai_pb2.GenerateRequest(
        turns=[ai_pb2.ChatTurn(role=role, content=content) for role, content in turns],
        max_tokens=max_tokens,
        request_id="test",
    )


def ask(text: str, max_tokens: int = 0) -> ai_pb2.GenerateRequest:
    return request((common_pb2.ROLE_USER, text), max_tokens=max_tokens)


async def generate(
    channel: grpc.aio.Channel, req: ai_pb2.GenerateRequest
) -> tuple[list[ai_pb2.GenerateDelta], list[ai_pb2.GenerateFinish]]:
    stub = ai_pb2_grpc.AiServiceStub(channel)
    deltas, finishes = [], []
    async for response in stub.Generate(req, timeout=CALL_TIMEOUT_S):
        if response.HasField("delta"):
            deltas.append(response.delta)
        else:
            finishes.append(response.finish)
    return deltas, finishes


def tokens(count: int) -> str:
    return " ".join(f"tok{index}" for index in range(count))


async def test_generate_streams_the_whole_answer_then_one_finish(
    channel: grpc.aio.Channel,
) -> None:
    deltas, finishes = await generate(channel, ask("hello tokens=5"))

    assert "".join(delta.text for delta in deltas) == tokens(5)
    assert len(finishes) == 1
    assert finishes[0].finish_reason == "stop"
    assert finishes[0].model == "durablechat-dev-model"
    assert finishes[0].usage.completion_tokens == 5
    assert finishes[0].usage.prompt_tokens == 2


async def test_generate_coalesces_fast_tokens_into_batches(channel: grpc.aio.Channel) -> None:
    deltas, _ = await generate(channel, ask("hello tokens=300"))

    assert "".join(delta.text for delta in deltas) == tokens(300)
    assert sum(delta.chunk_count for delta in deltas) == 300
    assert len(deltas) < 300
    assert all(1 <= delta.chunk_count <= 32 for delta in deltas)


async def test_generate_passes_the_whole_conversation(channel: grpc.aio.Channel) -> None:
    conversation = request(
        (common_pb2.ROLE_SYSTEM, "be brief"),
        (common_pb2.ROLE_USER, "tokens=9"),
        (common_pb2.ROLE_ASSISTANT, "tok0"),
        (common_pb2.ROLE_USER, "now tokens=3"),
    )
    deltas, finishes = await generate(channel, conversation)

    assert "".join(delta.text for delta in deltas) == tokens(3)
    assert finishes[0].usage.prompt_tokens == 6


async def test_generate_max_tokens_finishes_with_length(channel: grpc.aio.Channel) -> None:
    deltas, finishes = await generate(channel, ask("hello tokens=10", max_tokens=4))

    assert "".join(delta.text for delta in deltas) == tokens(4)
    assert finishes[0].finish_reason == "length"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(request(), id="no-turns"),
        pytest.param(request((common_pb2.ROLE_USER, "")), id="empty-content"),
        pytest.param(request((common_pb2.ROLE_UNSPECIFIED, "hi")), id="unspecified-role"),
        pytest.param(
            request((common_pb2.ROLE_USER, "hi"), (common_pb2.Role.ValueType(99), "hi")),
            id="unknown-role",
        ),
    ],
)
async def test_generate_rejects_bad_turns_as_invalid_argument(
    channel: grpc.aio.Channel, bad: ai_pb2.GenerateRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await generate(channel, bad)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "turns" in (raised.value.details() or "")


async def test_health_reports_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "durablechat.v1.AiService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_ai_service(ai_addr: str) -> None:
    with grpc.insecure_channel(ai_addr) as sync_channel:
        services = ProtoReflectionDescriptorDatabase(sync_channel).get_services()

    assert "durablechat.v1.AiService" in services


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
async def test_generate_with_the_model_stopped_is_unavailable_not_a_hang(
    own_stack: Stack, http_client: str
) -> None:
    # aiohttp's transport reports a refused connection as a connect timeout: still UNAVAILABLE.
    own_stack.start_model(token_delay_ms=0)
    own_stack.start_ai(CLUSTER_SECRET_FILE="", AI_HTTP_CLIENT=http_client)
    assert own_stack.model is not None
    own_stack.model.stop()

    async with grpc.aio.insecure_channel(own_stack.ai_addr) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await generate(channel, ask("hello"))

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_continued_answer_reports_the_chunks_sent_beyond_its_prefix(
    channel: grpc.aio.Channel, ai_log: Path
) -> None:
    stub = ai_pb2_grpc.AiServiceStub(channel)
    first = request((common_pb2.ROLE_USER, "tokens=1000"))
    first.request_id = "regen-1"
    received = 0
    call = stub.Generate(first, timeout=CALL_TIMEOUT_S)
    async for response in call:
        received += response.delta.chunk_count
        if received >= 50:
            break
    call.cancel()
    eventually(lambda: "generate cancelled" in ai_log.read_text())

    stored = 20  # the caller stored only the first 20 chunks, then died
    second = request((common_pb2.ROLE_USER, "tokens=1000"), (common_pb2.ROLE_ASSISTANT, tokens(20)))
    second.request_id = "regen-1"
    deltas, finishes = await generate(channel, second)

    assert "".join(d.text for d in deltas) == tokens(1000)[len(tokens(stored)) :]
    assert received - stored <= finishes[0].regenerated_chunks <= 1000 - stored
