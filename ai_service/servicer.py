"""AiService/Generate: validates turns (else INVALID_ARGUMENT), streams batched deltas then exactly
one finish; a model failure aborts the call with the status `errors.status_for` gives.

A request whose last turn is the assistant's (a partial answer: its owner died mid-answer, or a
model call broke) is gone on from as ANSWER_CONTINUE says, and the first reply says which in
`continue_mode`: PREFILL sends the turn for the model to continue (the replies are only the new
text); RESTART drops it and the model answers the request afresh (the replies are a whole new
answer that replaces the partial one). A partial answer with nothing before it is
INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence

import grpc

from ai_service.config import Config
from ai_service.errors import InvalidRequest, status_for
from ai_service.metrics import AiMetrics
from ai_service.provider import Finish, OpenAIProvider, Role, Turn
from ai_service.regenerated import Call, SentChunks
from common.batching import WideningWindow, batches
from durablechat.v1 import ai_pb2, ai_pb2_grpc, common_pb2

logger = logging.getLogger(__name__)

_ROLES: dict[int, Role] = {
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_SYSTEM: "system",
}

_CONTINUE_MODES = {
    "prefill": ai_pb2.CONTINUE_MODE_PREFILL,
    "restart": ai_pb2.CONTINUE_MODE_RESTART,
}

Context = grpc.aio.ServicerContext[ai_pb2.GenerateRequest, ai_pb2.GenerateResponse]


class AiServicer(ai_pb2_grpc.AiServiceServicer):
    """Each Generate owns its provider stream and closes it on exit. Between calls only the
    regenerated-chunk counts of recent answers are kept (regenerated.py)."""

    def __init__(
        self, provider: OpenAIProvider, cfg: Config, metrics: AiMetrics | None = None
    ) -> None:
        self._provider = provider
        self._cfg = cfg
        self._sent = SentChunks()
        self._metrics = metrics or AiMetrics()
        self._window = WideningWindow(
            cfg.batch_ms / 1000, cfg.batch_max_ms / 1000, cfg.batch_us_per_stream / 1_000_000
        )

    async def Generate(
        self, request: ai_pb2.GenerateRequest, context: Context
    ) -> AsyncIterator[ai_pb2.GenerateResponse]:
        extra = {"request_id": request.request_id, "model": request.model or self._cfg.openai_model}
        started = time.monotonic()
        try:
            turns = turns_from_proto(request.turns)
            partial = turns[-1].role == "assistant"
            unset = ai_pb2.CONTINUE_MODE_UNSPECIFIED
            mode = _CONTINUE_MODES[self._cfg.answer_continue] if partial else unset
            restart = mode == ai_pb2.CONTINUE_MODE_RESTART
            if partial:
                extra["continue_mode"] = self._cfg.answer_continue
            if restart:  # the model answers the original request afresh
                turns = turns[:-1]
                if not turns:
                    raise InvalidRequest("a partial answer needs the turns it answers")
            # Restarting, none of the earlier calls' text is kept: all of it is generated again.
            kept = len(request.turns[-1].content) if partial and not restart else 0
            sent = self._sent.start(request.request_id, kept)
            self._metrics.regenerated_chunks.inc(sent.added)
            first = True
            answer = self._provider.stream(
                turns,
                model=request.model or self._cfg.openai_model,
                max_tokens=request.max_tokens or self._cfg.max_tokens,
                prefill=partial and not restart,
            )
            stream = batches(answer, self._cfg.batch_max_chunks, self._window)
            with self._window.streaming():
                async with contextlib.aclosing(stream):
                    async for batch in stream:
                        if first:
                            first = False
                            self._metrics.first_chunk_seconds.observe(time.monotonic() - started)
                        for response in _responses(batch, sent):
                            if mode:  # the first reply says how the partial answer went on
                                response.continue_mode, mode = mode, unset
                            if response.HasField("delta"):
                                self._metrics.chunks.inc(response.delta.chunk_count)
                            if response.HasField("finish"):
                                _log_finish(response.finish, started, extra)
                            yield response
        except (asyncio.CancelledError, GeneratorExit):
            # GeneratorExit: grpc closed this stream because the caller went away.
            logger.info("generate cancelled (caller gone, deadline or shutdown)", extra=extra)
            raise
        except Exception as exc:
            code, details = status_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                logger.exception("generate failed", extra=extra)
            else:
                logger.warning("generate failed: %s", details, extra={**extra, "code": code.name})
            await context.abort(code, details)


def turns_from_proto(turns: Sequence[ai_pb2.ChatTurn]) -> list[Turn]:
    """Domain turns, or InvalidRequest naming the first bad turn."""
    if not turns:
        raise InvalidRequest("turns must hold at least one turn")
    converted = []
    for index, turn in enumerate(turns):
        role = _ROLES.get(turn.role)
        if role is None:
            raise InvalidRequest(f"turns[{index}].role must be USER, ASSISTANT or SYSTEM")
        if not turn.content:
            raise InvalidRequest(f"turns[{index}].content must not be empty")
        converted.append(Turn(role, turn.content))
    return converted


def _responses(batch: Iterable[str | Finish], sent: Call) -> Iterable[ai_pb2.GenerateResponse]:
    """One delta for the batch's text chunks (if any), then the finish if the batch ends with it.
    Chunks are recorded in `sent` as they are handed to gRPC."""
    texts = [item for item in batch if isinstance(item, str)]
    if texts:
        for text in texts:
            sent.sent(text)
        delta = ai_pb2.GenerateDelta(text="".join(texts), chunk_count=len(texts))
        yield ai_pb2.GenerateResponse(delta=delta)
    for item in batch:
        if isinstance(item, Finish):
            yield ai_pb2.GenerateResponse(finish=_finish_to_proto(item, sent.regenerated))


def _finish_to_proto(finish: Finish, regenerated: int) -> ai_pb2.GenerateFinish:
    message = ai_pb2.GenerateFinish(
        finish_reason=finish.finish_reason, model=finish.model, regenerated_chunks=regenerated
    )
    if finish.usage is not None:
        message.usage.prompt_tokens = finish.usage.prompt_tokens
        message.usage.completion_tokens = finish.usage.completion_tokens
    return message


def _log_finish(finish: ai_pb2.GenerateFinish, started: float, extra: dict[str, str]) -> None:
    logger.info(
        "generate finished",
        extra={
            **extra,
            "finish_reason": finish.finish_reason,
            "completion_tokens": finish.usage.completion_tokens,
            "regenerated_chunks": finish.regenerated_chunks,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
