"""How `python -m ai_service` reports model failures, against a fake model with fault knobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from ai_service.config import HTTP_CLIENTS
from durablechat.v1 import ai_pb2, ai_pb2_grpc, common_pb2
from tests.support.ai_process import ai_service
from tests.support.fakes.openai_server import MODEL_ID, FakeOpenAI

pytestmark = pytest.mark.timeout(60)

REQUEST_TIMEOUT_MS = 1000
CALL_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture(scope="module", params=HTTP_CLIENTS)
def ai_addr(
    fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An AI service in front of the fake, once per HTTP transport the openai client can use."""
    env = {"AI_HTTP_CLIENT": request.param, "AI_REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS)}
    with ai_service(fake.url, Path(tmp_path_factory.mktemp("ai-faults")), **env) as addr:
        yield addr


@pytest.fixture
async def stub(ai_addr: str) -> AsyncIterator[ai_pb2_grpc.AiServiceAsyncStub]:
    async with grpc.aio.insecure_channel(ai_addr) as channel:
        yield ai_pb2_grpc.AiServiceStub(channel)


def ask(text: str = "hello", model: str = "", max_tokens: int = 0) -> ai_pb2.GenerateRequest:
    turn = ai_pb2.ChatTurn(role=common_pb2.ROLE_USER, content=text)
    return ai_pb2.GenerateRequest(turns=[turn], model=model, max_tokens=max_tokens)


async def failure_of(
    stub: ai_pb2_grpc.AiServiceAsyncStub, texts: list[str]
) -> grpc.aio.AioRpcError:
    """Runs Generate expecting it to fail; `texts` collects the deltas that came first."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for response in stub.Generate(ask(), timeout=CALL_TIMEOUT_S):
            texts.append(response.delta.text)
    return raised.value


@pytest.mark.parametrize(
    ("status", "code"),
    [
        pytest.param(429, grpc.StatusCode.RESOURCE_EXHAUSTED, id="429-resource-exhausted"),
        pytest.param(500, grpc.StatusCode.UNAVAILABLE, id="500-unavailable"),
        pytest.param(503, grpc.StatusCode.UNAVAILABLE, id="503-unavailable"),
        pytest.param(400, grpc.StatusCode.INVALID_ARGUMENT, id="400-invalid-argument"),
        pytest.param(401, grpc.StatusCode.FAILED_PRECONDITION, id="401-failed-precondition"),
        pytest.param(403, grpc.StatusCode.FAILED_PRECONDITION, id="403-failed-precondition"),
        pytest.param(404, grpc.StatusCode.INTERNAL, id="404-internal"),
    ],
)
async def test_model_http_error_maps_to_grpc_status(
    stub: ai_pb2_grpc.AiServiceAsyncStub,
    fake: FakeOpenAI,
    status: int,
    code: grpc.StatusCode,
) -> None:
    fake.fail_next_with(status)

    error = await failure_of(stub, [])

    assert error.code() == code
    assert len(fake.requests) == 1, "the AI service must not retry on its own"


async def test_rejected_key_tells_the_operator_to_check_it(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    fake.fail_next_with(401)

    error = await failure_of(stub, [])

    assert "OPENAI_API_KEY" in (error.details() or "")


async def test_stream_cut_mid_answer_delivers_the_text_so_far_then_unavailable(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    fake.cut_stream_after(3)
    texts: list[str] = []

    error = await failure_of(stub, texts)

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "".join(texts) == "tok0 tok1 tok2"


async def test_stalled_model_is_deadline_exceeded(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    fake.stall_next()

    error = await failure_of(stub, [])

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "AI_REQUEST_TIMEOUT_MS" in (error.details() or "")


async def test_request_sends_turns_model_and_token_limit_with_usage_on(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    responses = [r async for r in stub.Generate(ask("hi", "other-model", 7), timeout=5)]

    assert responses[-1].finish.model == MODEL_ID
    [sent] = fake.requests
    assert sent["model"] == "other-model"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["max_completion_tokens"] == 7
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_caller_hang_up_aborts_the_model_request(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    fake.tokens, fake.delay_ms = 100_000, 10  # streams for ~17 minutes unless aborted
    call = stub.Generate(ask(), timeout=CALL_TIMEOUT_S)
    first = await call.read()
    assert isinstance(first, ai_pb2.GenerateResponse)
    assert first.delta.text.startswith("tok0")

    call.cancel()

    assert await asyncio.to_thread(fake.hung_up.wait, 10)
