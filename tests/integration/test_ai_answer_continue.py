"""ANSWER_CONTINUE against a fake model that records requests: prefill sends the partial answer
as a trailing assistant turn with the fields that make a server continue it; restart sends the
original request without it; the first reply says which, and `regenerated_chunks` counts what
the new answer replaces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from durablechat.v1 import ai_pb2, ai_pb2_grpc, common_pb2
from tests.support.ai_process import ai_service
from tests.support.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.timeout(60)

PARTIAL = "tok0 tok1 tok2"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=10) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture(scope="module", params=["prefill", "restart"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def ai_addr(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[str]:
    """An AI service for a hosted model (restart unless ANSWER_CONTINUE says prefill)."""
    env = {"OPENAI_MODEL": "hosted-model"}
    if mode == "prefill":
        env["ANSWER_CONTINUE"] = "prefill"
    with ai_service(fake.url, Path(tmp_path_factory.mktemp(f"ai-{mode}")), **env) as addr:
        yield addr


@pytest.fixture
async def stub(ai_addr: str) -> AsyncIterator[ai_pb2_grpc.AiServiceAsyncStub]:
    async with grpc.aio.insecure_channel(ai_addr) as channel:
        yield ai_pb2_grpc.AiServiceStub(channel)


def request(
    *turns: tuple[common_pb2.Role.ValueType, str], request_id: str = ""
) -> ai_pb2.GenerateRequest:
    chat = [ai_pb2.ChatTurn(role=role, content=content) for role, content in turns]
    return ai_pb2.GenerateRequest(turns=chat, request_id=request_id)


async def replies(
    stub: ai_pb2_grpc.AiServiceAsyncStub, req: ai_pb2.GenerateRequest
) -> list[ai_pb2.GenerateResponse]:
    return [r async for r in stub.Generate(req, timeout=10)]


USER = (common_pb2.ROLE_USER, "hello")
PARTIAL_TURN = (common_pb2.ROLE_ASSISTANT, PARTIAL)


async def test_a_partial_answer_goes_on_as_the_mode_says_and_the_first_reply_tells_which(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI, mode: str
) -> None:
    got = await replies(stub, request(USER, PARTIAL_TURN))

    [sent] = fake.requests
    modes = [r.continue_mode for r in got]
    if mode == "prefill":
        assert sent["messages"][-1] == {"role": "assistant", "content": PARTIAL}
        assert sent["continue_final_message"] is True
        assert sent["add_generation_prompt"] is False
        assert modes[0] == ai_pb2.CONTINUE_MODE_PREFILL
    else:
        assert sent["messages"] == [{"role": "user", "content": "hello"}]
        assert "continue_final_message" not in sent and "add_generation_prompt" not in sent
        assert modes[0] == ai_pb2.CONTINUE_MODE_RESTART
    assert set(modes[1:]) <= {ai_pb2.CONTINUE_MODE_UNSPECIFIED}


async def test_a_new_answer_has_no_prefill_fields_and_no_mode(
    stub: ai_pb2_grpc.AiServiceAsyncStub, fake: FakeOpenAI
) -> None:
    got = await replies(stub, request(USER))

    [sent] = fake.requests
    assert "continue_final_message" not in sent
    assert {r.continue_mode for r in got} == {ai_pb2.CONTINUE_MODE_UNSPECIFIED}


async def test_restarting_counts_every_chunk_sent_before_as_regenerated(
    stub: ai_pb2_grpc.AiServiceAsyncStub, mode: str
) -> None:
    first = await replies(stub, request(USER, request_id="regen"))
    sent_before = sum(r.delta.chunk_count for r in first)
    again = await replies(stub, request(USER, PARTIAL_TURN, request_id="regen"))

    regenerated = again[-1].finish.regenerated_chunks
    # Prefill keeps the 3 stored chunks; restart replaces all of them.
    assert regenerated == (sent_before - 3 if mode == "prefill" else sent_before)


async def test_a_partial_answer_with_nothing_before_it_cannot_be_restarted(
    stub: ai_pb2_grpc.AiServiceAsyncStub, mode: str
) -> None:
    if mode == "prefill":  # sent as it is: the model continues it
        assert (await replies(stub, request(PARTIAL_TURN)))[-1].HasField("finish")
        return
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await replies(stub, request(PARTIAL_TURN))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
