"""The dev model process speaks the OpenAI protocol well enough for the real openai client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from ai_service.dev_model import MODEL_ID
from deploy.stack.running import Stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = Stack(tmp_path_factory.mktemp("dev-model"))
    try:
        stack.start_model(token_delay_ms=0)
        yield stack.model_url
    finally:
        stack.close()


@pytest.fixture
async def client(model_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=model_url, api_key="dev", max_retries=0) as client:
        yield client


def user(text: str) -> list[openai.types.chat.ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def stream_chunks(
    client: openai.AsyncOpenAI, text: str, max_tokens: int | openai.Omit = openai.omit
) -> list[openai.types.chat.ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model=MODEL_ID,
        messages=user(text),
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=max_tokens,
    )
    return [chunk async for chunk in stream]


def answer_text(chunks: list[openai.types.chat.ChatCompletionChunk]) -> str:
    return "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)


def finish_reason(chunks: list[openai.types.chat.ChatCompletionChunk]) -> str | None:
    reasons = [choice.finish_reason for chunk in chunks for choice in chunk.choices]
    return next(reason for reason in reversed(reasons) if reason)


async def test_stream_answers_the_requested_token_count(client: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(client, "hello tokens=5")

    assert answer_text(chunks) == "tok0 tok1 tok2 tok3 tok4"
    assert finish_reason(chunks) == "stop"


async def test_stream_starts_with_the_assistant_role_and_ends_with_usage(
    client: openai.AsyncOpenAI,
) -> None:
    chunks = await stream_chunks(client, "two words tokens=3")

    assert chunks[0].choices[0].delta.role == "assistant"
    assert [len(chunk.choices) for chunk in chunks[1:-1]] == [1, 1, 1, 1]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == 3
    assert chunks[-1].usage.total_tokens == 6
    assert {chunk.model for chunk in chunks} == {MODEL_ID}


async def test_stream_without_a_token_count_answers_fifty_tokens(
    client: openai.AsyncOpenAI,
) -> None:
    chunks = await stream_chunks(client, "hello")

    assert answer_text(chunks) == " ".join(f"tok{index}" for index in range(50))


async def test_token_count_comes_from_the_last_user_message(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "user", "content": "tokens=9"},
            {"role": "assistant", "content": "tokens=8"},
            {"role": "user", "content": "again tokens=2"},
        ],
        stream=True,
    )

    assert answer_text([chunk async for chunk in stream]) == "tok0 tok1"


async def test_max_tokens_stops_early_with_finish_length(client: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(client, "hello tokens=10", max_tokens=4)

    assert answer_text(chunks) == "tok0 tok1 tok2 tok3"
    assert finish_reason(chunks) == "length"


async def test_without_stream_answers_one_completion(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL_ID, messages=user("hello tokens=3"), stream=False
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "tok0 tok1 tok2"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_models_lists_the_dev_model(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()

    assert [model.id async for model in models] == [MODEL_ID]


async def test_missing_messages_is_a_400_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model=MODEL_ID, messages=[], stream=True)


def test_bad_json_is_a_400_with_an_openai_error_body(model_url: str) -> None:
    request = urllib.request.Request(
        f"{model_url}/chat/completions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)

    with raised.value as reply:
        assert reply.code == 400
        error = json.loads(reply.read())["error"]
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


async def test_a_trailing_assistant_prefix_is_continued_not_repeated(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "user", "content": "go tokens=6"},
            {"role": "assistant", "content": "tok0 tok1 tok2"},
        ],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert answer_text(chunks) == " tok3 tok4 tok5"
