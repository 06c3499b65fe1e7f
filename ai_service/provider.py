"""Streams a chat answer from an OpenAI-protocol model as text chunks then one `Finish`; any openai
failure is re-raised as an `errors.AiError` keeping its cause. The only module importing openai."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp
import anyio
import httpx2
import openai

from ai_service.config import HttpClient
from ai_service.errors import (
    AiError,
    ModelFailed,
    ModelMisconfigured,
    ModelRateLimited,
    ModelRejectedRequest,
    ModelTimeout,
    ModelUnavailable,
)
from ai_service.sse import DONE, ChunkFields, MalformedChunk, SseDecoder

MS_PER_S = 1000
RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
"""Set to "stream", the openai client hands back the response unread (as its
`with_streaming_response` does) instead of parsing each chunk into a model object."""
TRANSPORT_ERRORS = (httpx2.TransportError, ssl.SSLError, anyio.EndOfStream, aiohttp.ClientError)
"""What a broken connection raises while the body is read (the openai client's own list, and
what the aiohttp transport lets through unmapped)."""
DRAIN_TIMEOUT_S = 1.0
PREFILL_FIELDS = {"continue_final_message": True, "add_generation_prompt": False}
"""Extra body fields asking an OpenAI-protocol server to continue the trailing assistant turn
and stream only the new text (without them llama-server's first delta repeats the prefix)."""

Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True)
class Turn:
    """One message of the conversation sent to the model."""

    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """Token counts as the model reported them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Finish:
    """The last item of every successful stream."""

    finish_reason: str
    usage: Usage | None
    model: str


class OpenAIProvider:
    """Owns one long-lived AsyncOpenAI client (its connection pool is shared by all calls).

    The client never retries (`max_retries=0`): whether to retry is the caller's decision, made
    from the gRPC status. `close()` releases the pool; call it once at shutdown.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str,
        timeout_ms: int,
        http_client: HttpClient = "aiohttp",
    ) -> None:
        timeout_s = timeout_ms / MS_PER_S
        # aiohttp's C HTTP parser reads each streamed chunk for about a third less CPU than the
        # default httpx transport (docs/bench/profiles.md); both are the openai package's own.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            http_client=(
                openai.DefaultAioHttpClient(timeout=timeout_s) if http_client == "aiohttp" else None
            ),
        )

    async def close(self) -> None:
        await self._client.close()

    async def stream(
        self, turns: Sequence[Turn], *, model: str, max_tokens: int, prefill: bool = False
    ) -> AsyncGenerator[str | Finish, None]:
        """Yields the answer's non-empty text chunks in order, then exactly one `Finish`.

        `prefill`: the last turn is a partial answer of the assistant's for the model to go on
        from; the request then asks for only the new text (`continue_final_message: true,
        add_generation_prompt: false`, as llama-server and vLLM read them).

        Closing the generator early closes the HTTP response, aborting the model's request.
        Raises an `AiError` subclass when the model fails, including mid-stream, and
        `ModelUnavailable` when the stream ends without a finish reason.
        """
        body = {
            "model": model,
            "messages": [{"role": turn.role, "content": turn.content} for turn in turns],
            "max_completion_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prefill:
            body.update(PREFILL_FIELDS)
        try:
            # The client's `post` with a body we built: `chat.completions.create` would run its
            # parameter transform over the whole history on every call, which py-spy showed to
            # be the AI service's largest cost (it grows with the thread's length). The reply
            # is not parsed by the client (what `with_streaming_response` asks for): building a
            # model object per chunk was most of the AI service's CPU per token (docs/bench/
            # profiles.md); sse.py reads the few fields we use.
            upstream = await self._client.post(
                "/chat/completions",
                body=body,
                cast_to=openai.AsyncAPIResponse[bytes],
                options={"headers": {RAW_RESPONSE_HEADER: "stream"}},
                stream=True,
            )
        except openai.OpenAIError as exc:
            raise wrap_error(exc) from exc
        finish_reason = ""
        usage: Usage | None = None
        answered_by = model
        decoder = SseDecoder()
        received = upstream.iter_bytes()
        try:
            async for data in _events(received, decoder):
                if data == DONE:
                    await _drain(received)
                    break
                fields = ChunkFields.of(data)
                if fields.error is not None:
                    raise ModelFailed(f"model call failed: {fields.error}")
                answered_by = fields.model or answered_by
                if fields.usage is not None:
                    usage = Usage(*fields.usage)
                if fields.text:
                    yield fields.text
                finish_reason = fields.finish_reason or finish_reason
        except httpx2.TimeoutException as exc:
            broken = connection_failure(exc)
            if broken is not None:
                raise ModelUnavailable(f"model unreachable: {broken}") from exc
            raise ModelTimeout("model did not answer within AI_REQUEST_TIMEOUT_MS") from exc
        except TRANSPORT_ERRORS as exc:
            raise ModelUnavailable(f"model unreachable: {exc}") from exc
        except MalformedChunk as exc:
            raise ModelFailed(f"model sent a malformed stream: {exc}") from exc
        finally:
            await upstream.close()
        if not finish_reason:
            raise ModelUnavailable("model stream ended without a finish reason")
        yield Finish(finish_reason, usage, answered_by)


async def _events(received: AsyncIterator[bytes], decoder: SseDecoder) -> AsyncIterator[bytes]:
    """The data of each event in the byte stream (held, not closed, by the caller)."""
    async for chunk in received:
        for data in decoder.feed(chunk):
            yield data


async def _drain(received: AsyncIterator[bytes]) -> None:
    """Reads what follows [DONE] (the body's end), so an HTTP/1.1 connection can be reused;
    gives up after DRAIN_TIMEOUT_S (the connection is then closed instead)."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, *TRANSPORT_ERRORS):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in received:
                pass


def connection_failure(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error (refused, reset, closed) under a reported timeout, if any.

    The aiohttp transport reports every aiohttp connection error as httpx's ConnectTimeout, so
    a stopped model would read as a slow one (DEADLINE_EXCEEDED, not UNAVAILABLE); the cause
    chain still holds what happened.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__
    return None


def wrap_error(exc: openai.OpenAIError) -> AiError:
    """The AiError for an openai failure; the caller raises it `from exc`."""
    if isinstance(exc, openai.APITimeoutError):
        broken = connection_failure(exc)
        if broken is not None:
            return ModelUnavailable(f"model unreachable: {broken}")
        return ModelTimeout("model did not answer within AI_REQUEST_TIMEOUT_MS")
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(f"model unreachable: {exc.__cause__ or exc}")
    if isinstance(exc, openai.APIStatusError):
        return _wrap_status(exc.status_code, exc.message)
    return ModelFailed(f"model call failed: {exc}")


def _wrap_status(status: int, message: str) -> AiError:
    if status == 429:
        return ModelRateLimited(f"model rate limited (HTTP 429): {message}")
    if status in (401, 403):
        return ModelMisconfigured(
            f"model refused our credentials (HTTP {status}); check OPENAI_API_KEY: {message}"
        )
    if status == 400:
        return ModelRejectedRequest(f"model rejected the request (HTTP 400): {message}")
    if status >= 500:
        return ModelUnavailable(f"model failed (HTTP {status}): {message}")
    return ModelFailed(f"model answered HTTP {status}: {message}")
