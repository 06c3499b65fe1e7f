"""A small async gRPC client of the session service for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from durablechat.v1 import common_pb2, session_pb2, session_pb2_grpc


class SessionClient:
    """Wraps the generated stub with defaults tests need (deadlines, roles)."""

    def __init__(self, address: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)
        self.metadata = metadata
        """Sent with every call (a bearer token with AUTH_MODE=jwt)."""

    async def close(self) -> None:
        await self.channel.close()

    async def append(self, sid: str, content: str, client_id: str = "", user: str = "") -> Any:
        return await self.stub.AppendMessage(
            session_pb2.AppendMessageRequest(
                session_id=sid,
                role=common_pb2.ROLE_USER,
                content=content,
                client_message_id=client_id,
                user=user,
            ),
            timeout=10,
            metadata=self.metadata,
        )

    async def get(self, sid: str) -> session_pb2.Session:
        reply = await self.stub.GetSession(
            session_pb2.GetSessionRequest(session_id=sid), timeout=10, metadata=self.metadata
        )
        return reply.session

    async def list_all(self, sid: str) -> list[common_pb2.Message]:
        out: list[common_pb2.Message] = []
        after = 0
        while True:
            page = await self.stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id=sid, after_seq=after, limit=1000),
                timeout=10,
                metadata=self.metadata,
            )
            out.extend(page.messages)
            if not page.has_more:
                return out
            after = page.messages[-1].seq

    async def patch(self, sid: str, patch_json: str, expected: int | None = None) -> Any:
        request = session_pb2.UpdateStateRequest(session_id=sid, patch_json=patch_json)
        if expected is not None:
            request.expected_version = expected
        return await self.stub.UpdateState(request, timeout=10, metadata=self.metadata)

    async def prompt(
        self, sid: str, content: str, client_id: str = "", user: str = "tester"
    ) -> Any:
        return await self.stub.SendPrompt(
            session_pb2.SendPromptRequest(
                session_id=sid, content=content, user=user, client_message_id=client_id
            ),
            timeout=10,
            metadata=self.metadata,
        )

    def subscribe(self, sid: str, after_seq: int | None = None, after_offset: int = 0) -> Any:
        request = session_pb2.SubscribeRequest(session_id=sid, after_offset=after_offset)
        if after_seq is not None:
            request.after_seq = after_seq
        return self.stub.Subscribe(request, metadata=self.metadata)


async def events_until(
    stream: AsyncIterator[session_pb2.SubscribeResponse], stop_kind: str, count: int = 1
) -> list[session_pb2.SessionEvent]:
    """Reads events until `count` events of kind `stop_kind` arrived (inclusive)."""
    out: list[session_pb2.SessionEvent] = []
    seen = 0
    async for reply in stream:
        out.append(reply.event)
        if reply.event.WhichOneof("kind") == stop_kind:
            seen += 1
            if seen == count:
                return out
    raise AssertionError(f"stream ended before {count} {stop_kind}: {out}")


RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def append_retrying(client: SessionClient, sid: str, text: str, cid: str) -> Any:
    """Appends with an idempotency key, retrying as a client of the cluster should: a retry of
    an append that did land returns the original (duplicate), never a second copy."""
    return await retrying(lambda: client.append(sid, text, client_id=cid))


async def retrying(call: Callable[[], Awaitable[Any]]) -> Any:
    """Retries UNAVAILABLE and DEADLINE_EXCEEDED for up to 15 s (idempotent calls only)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)
