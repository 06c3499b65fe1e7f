"""The session service's client of the AI service: one long-lived channel, deadline per answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from common import tracing
from common.grpc_server import CHANNEL_OPTIONS
from durablechat.v1 import ai_pb2, ai_pb2_grpc, common_pb2
from session_service.errors import AnswerFailed

_ROLES = {
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "system": common_pb2.ROLE_SYSTEM,
}


RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # model 5xx, connection refused, stream cut
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # model 429
        grpc.StatusCode.DEADLINE_EXCEEDED,  # model stalled
    }
)
"""Failures worth another model call: the owner continues the answer from its stored text."""


class AiClient:
    """Streams answers from `durablechat.v1.AiService/Generate`."""

    def __init__(
        self, address: str, timeout_ms: int, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._channel = grpc.aio.insecure_channel(
            address, options=CHANNEL_OPTIONS, interceptors=tracing.client_interceptors()
        )
        self._stub = ai_pb2_grpc.AiServiceStub(self._channel)
        self._timeout_s = timeout_ms / 1000
        self._metadata = metadata
        """The cluster key (common/planes.py): the AI service serves pods only."""

    async def close(self) -> None:
        await self._channel.close()

    async def generate(
        self,
        turns: list[tuple[str, str]],
        request_id: str,
        usage: list[int],
        max_tokens: int = 0,
        restarted: asyncio.Event | None = None,
    ) -> AsyncIterator[tuple[str, int]]:
        """`restarted` is set, before any text is yielded, when the AI service dropped the
        trailing assistant turn and its model answers afresh (ANSWER_CONTINUE=restart); an AI
        service that does not say is taken to continue the turn."""
        request = ai_pb2.GenerateRequest(
            turns=[ai_pb2.ChatTurn(role=_ROLES[role], content=text) for role, text in turns],
            request_id=request_id,
            max_tokens=max_tokens,
        )
        call = self._stub.Generate(request, timeout=self._timeout_s, metadata=self._metadata)
        try:
            async for reply in call:
                restart = reply.continue_mode == ai_pb2.CONTINUE_MODE_RESTART
                if restart and restarted is not None:
                    restarted.set()
                if reply.HasField("delta"):
                    yield reply.delta.text, max(1, reply.delta.chunk_count)
                elif reply.HasField("finish"):
                    usage[0] += reply.finish.usage.prompt_tokens
                    usage[1] += reply.finish.usage.completion_tokens
                    # Summed by the AI service over every call of this request id.
                    usage[2] = max(usage[2], reply.finish.regenerated_chunks)
        except grpc.aio.AioRpcError as exc:
            retryable = exc.code() in RETRYABLE_CODES
            raise AnswerFailed(f"{exc.code().name}: {exc.details()}", retryable) from exc
        finally:
            call.cancel()
