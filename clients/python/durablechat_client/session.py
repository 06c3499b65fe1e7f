"""`ChatSessionClient`: one chat session over gRPC, with the operations of seed 003's client.

State helpers store top-level keys of the session's JSON state (`pendingMatch`, `bookingInfo`,
`searchCriteria`) with a merge patch, so concurrent helpers never overwrite each other's keys.
`prompt` sends a prompt with an idempotency id and yields the answer's text as it streams,
resubscribing from its cursor when the stream breaks (owner moved or died): no gap, no
duplicate. If the answer's owner died and its model could not continue the stored text
(ANSWER_CONTINUE=restart), `prompt` yields `RESTART`: drop the text received so far, the answer
starts again. Calls that fail for good raise `grpc.aio.AioRpcError` with the server's status.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from durablechat.v1 import common_pb2, session_pb2, session_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
MAX_RESUMES = 10
"""Resubscriptions in a row with no event between them before `prompt` gives up (~15 s)."""
ROLES = {
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "system": common_pb2.ROLE_SYSTEM,
}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
STATUS_NAMES = {
    common_pb2.ANSWER_STATUS_COMPLETED: "completed",
    common_pb2.ANSWER_STATUS_INTERRUPTED: "interrupted",
    common_pb2.ANSWER_STATUS_FAILED: "failed",
    common_pb2.ANSWER_STATUS_CANCELLED: "cancelled",
}


class Restart:
    """Yielded by `prompt` when the answer starts again from nothing (docs/resume.md): the text
    yielded before it is no longer the answer's; replace it with what follows."""

    def __repr__(self) -> str:
        return "RESTART"


RESTART = Restart()


@dataclass(frozen=True)
class Answer:
    """An ended answer: its stored text, how it ended, and why when it did not complete."""

    text: str
    status: str
    error: str


def _with_token(details: Any, token: str) -> Any:
    metadata = (*(details.metadata or ()), ("authorization", f"Bearer {token}"))
    return details._replace(metadata=metadata)


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


class _BearerStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


class ChatSessionClient:
    """One session of a durable-chat deployment, reached at `address` (any pod, or Envoy)."""

    def __init__(
        self, address: str, session_id: str, *, timeout_s: float = 10.0, token: str = ""
    ) -> None:
        """`token`: a JWT sent as `authorization: Bearer` on every call (AUTH_MODE=jwt)."""
        self.session_id = session_id
        self._timeout_s = timeout_s
        interceptors = [_Bearer(token), _BearerStream(token)] if token else []
        self._channel = grpc.aio.insecure_channel(address, interceptors=interceptors)
        self._stub = session_pb2_grpc.SessionServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ChatSessionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- state ---------------------------------------------------------------------------------

    async def get_state(self) -> dict[str, Any]:
        """The state object plus `messages`, `createdAt` and `lastAccessedAt` (ms), as seed 001."""
        reply = await self._stub.GetSession(
            session_pb2.GetSessionRequest(session_id=self.session_id), timeout=self._timeout_s
        )
        s = reply.session
        state: dict[str, Any] = json.loads(s.state_json or "{}")
        state["messages"] = await self.get_messages()
        state["createdAt"] = s.created_at.ToMilliseconds()
        state["lastAccessedAt"] = s.last_accessed_at.ToMilliseconds()
        return state

    async def update_state(self, patch: dict[str, Any], expected_version: int | None = None) -> int:
        """Applies a JSON merge patch (None deletes a key); returns the new version. With
        `expected_version`, a concurrent change makes it fail with ABORTED."""
        request = session_pb2.UpdateStateRequest(
            session_id=self.session_id, patch_json=json.dumps(patch)
        )
        if expected_version is not None:
            request.expected_version = expected_version
        reply = await self._stub.UpdateState(request, timeout=self._timeout_s)
        return int(reply.version)

    async def _get_key(self, key: str) -> Any:
        reply = await self._stub.GetSession(
            session_pb2.GetSessionRequest(session_id=self.session_id), timeout=self._timeout_s
        )
        return json.loads(reply.session.state_json or "{}").get(key)

    async def set_pending_match(self, match: dict[str, Any] | None) -> None:
        await self.update_state({"pendingMatch": match})

    async def get_pending_match(self) -> dict[str, Any] | None:
        return await self._get_key("pendingMatch")  # type: ignore[no-any-return]

    async def set_booking_info(self, info: dict[str, Any] | None) -> None:
        await self.update_state({"bookingInfo": info})

    async def get_booking_info(self) -> dict[str, Any] | None:
        return await self._get_key("bookingInfo")  # type: ignore[no-any-return]

    async def set_search_criteria(self, criteria: dict[str, Any] | None) -> None:
        await self.update_state({"searchCriteria": criteria})

    async def get_search_criteria(self) -> dict[str, Any] | None:
        return await self._get_key("searchCriteria")  # type: ignore[no-any-return]

    # -- messages ------------------------------------------------------------------------------

    async def add_message(
        self, role: str, content: str, *, user: str = "", client_message_id: str = ""
    ) -> int:
        """Appends a message; returns its seq. Retried on UNAVAILABLE with the same id, so it
        is stored once."""
        request = session_pb2.AppendMessageRequest(
            session_id=self.session_id,
            role=ROLES[role],
            content=content,
            user=user,
            client_message_id=client_message_id or str(uuid.uuid4()),
        )
        reply = await self._retrying(
            lambda: self._stub.AppendMessage(request, timeout=self._timeout_s)
        )
        return int(reply.message.seq)

    async def get_messages(self) -> list[dict[str, Any]]:
        """Every message, oldest first: {seq, role, content, user, ts}."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            reply = await self._stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id=self.session_id, after_seq=after),
                timeout=self._timeout_s,
            )
            out += [
                {
                    "seq": m.seq,
                    "role": ROLE_NAMES.get(m.role, "user"),
                    "content": m.content,
                    "user": m.user,
                    "ts": m.created_at.ToMilliseconds(),
                }
                for m in reply.messages
            ]
            if not reply.has_more or not reply.messages:
                return out
            after = reply.messages[-1].seq

    # -- prompts -------------------------------------------------------------------------------

    async def prompt(self, content: str, *, user: str = "") -> AsyncIterator[str | Restart]:
        """Sends a prompt and yields its answer's text as it streams, or `RESTART` when the
        answer starts again (drop what came before it). `ask` returns the ended answer with its
        status instead."""
        async for item in self._follow(content, user):
            if not isinstance(item, Answer):
                yield item

    async def ask(self, content: str, *, user: str = "") -> Answer:
        """Sends a prompt and returns the ended answer (its stored text and status)."""
        async for item in self._follow(content, user):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("the answer stream ended without the answer's end")

    async def cancel(self) -> bool:
        """Cancels the streaming answer; False when none was streaming."""
        try:
            reply = await self._stub.CancelAnswer(
                session_pb2.CancelAnswerRequest(session_id=self.session_id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return False
            raise
        return bool(reply.cancelled)

    async def _follow(self, content: str, user: str) -> AsyncIterator[str | Restart | Answer]:
        # Subscribe first (from now), so nothing of the answer can slip past.
        cursor: tuple[int, int] | None = None
        stream = self._stub.Subscribe(session_pb2.SubscribeRequest(session_id=self.session_id))
        request = session_pb2.SendPromptRequest(
            session_id=self.session_id,
            content=content,
            user=user,
            client_message_id=str(uuid.uuid4()),
        )
        try:
            async for reply in stream:
                if reply.event.WhichOneof("kind") == "caught_up":
                    cursor = (reply.event.seq, reply.event.offset)
                    break
            sent = await self._retrying(
                lambda: self._stub.SendPrompt(request, timeout=self._timeout_s)
            )
            broken = 0
            while True:
                try:
                    async for reply in stream:
                        broken = 0
                        event = reply.event
                        kind = event.WhichOneof("kind")
                        cursor = _advance(cursor, event)
                        if kind == "answer_delta" and event.seq == sent.answer_seq:
                            yield event.answer_delta.text
                        elif kind == "answer_restarted":
                            if event.answer_restarted.interrupted.answer_seq == sent.answer_seq:
                                yield RESTART
                        elif kind == "answer_ended":
                            m = event.answer_ended.message
                            if m.answer_seq == sent.answer_seq:
                                status = STATUS_NAMES.get(m.answer_status, "unknown")
                                yield Answer(m.content, status, event.answer_ended.error)
                                return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in RETRYABLE or cursor is None:
                        raise
                # The stream broke or ended before the answer did: resume from the cursor.
                if cursor is None:
                    raise RuntimeError("the stream ended before it caught up")
                broken += 1
                if broken > MAX_RESUMES:
                    raise RuntimeError(f"the answer's stream broke {broken} times in a row")
                stream.cancel()
                await asyncio.sleep(min(2.0, 0.1 * 2**broken))
                stream = self._stub.Subscribe(
                    session_pb2.SubscribeRequest(
                        session_id=self.session_id, after_seq=cursor[0], after_offset=cursor[1]
                    )
                )
        finally:
            stream.cancel()

    async def _retrying(self, call: Any) -> Any:
        for attempt in range(8):
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == 7:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")


def _advance(cursor: tuple[int, int] | None, event: Any) -> tuple[int, int] | None:
    """The resume cursor after `event` (docs/resume.md)."""
    kind = event.WhichOneof("kind")
    if kind == "caught_up":
        return (event.seq, event.offset)
    if kind == "answer_delta":
        return None if cursor is None else (cursor[0], event.offset + 1)
    if kind in ("answer_ended", "answer_restarted"):
        return (event.seq, 0)
    return (event.seq, cursor[1] if cursor else 0)
