"""The session service as the gateway sees it: deadlined calls, proto <-> JSON, gRPC -> HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.wire import RETRY_AFTER_KEY, RETRY_SAFE_KEY
from durablechat.v1 import access_pb2, common_pb2, session_pb2
from gateway.errors import BadRequest, UpstreamError
from gateway.frames import (
    Cursor,
    Event,
)
from gateway.identity import upstream_metadata
from gateway.routing import PodRouter
from gateway.wire_json import ROLES_BY_NAME, event_from_proto, message_json, millis, state_object

logger = logging.getLogger(__name__)

_Request = TypeVar("_Request", bound=Message)

HTTP_STATUS_FOR_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""Every other gRPC status is an HTTP 500."""

FINAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
"""Statuses a retry cannot change; anything else may succeed from the same cursor later."""

HEALTH_DEADLINE_S = 1.0


POD_DOWN_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
"""Failures without our trailers that suggest the pod itself is down or stuck."""
RETRY_FIRST_DELAY_S = 0.01
"""As the hubs' first resubscribe (hub.py): the pods wait out a failover, so retry at once."""
RETRY_MAX_DELAY_S = 1.0


def _retryable(exc: grpc.aio.AioRpcError, idempotent: bool) -> bool:
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # a paused pod: only an idempotent call
        return idempotent
    if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return False
    trailers = exc.trailing_metadata() or ()
    return idempotent or any(key == RETRY_SAFE_KEY for key, _ in trailers)


def http_status_for(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_FOR_CODE.get(code, 500)


def upstream_error(exc: grpc.aio.AioRpcError) -> UpstreamError:
    """The gateway error for a failed call, keeping the session service's message."""
    code = exc.code()
    message = exc.details() or code.name.lower()
    wait = next((v for k, v in exc.trailing_metadata() or () if k == RETRY_AFTER_KEY), "0")
    return UpstreamError(
        message,
        status=http_status_for(code),
        code=code.name,
        retryable=code not in FINAL_CODES,
        retry_after_ms=int(wait) if str(wait).isdigit() else 0,
    )


@dataclass(frozen=True)
class SessionInfo:
    """A session as the REST API needs it: the state object, its version, and times in ms."""

    state: dict[str, Any]
    version: int
    created_ms: int
    last_accessed_ms: int


@dataclass(frozen=True)
class StateUpdate:
    version: int
    state: dict[str, Any]


@dataclass(frozen=True)
class Appended:
    message: dict[str, Any]
    duplicate: bool


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    has_more: bool
    last_seq: int


class SessionClient:
    """Calls to the session service over one long-lived channel; every unary call is deadlined.

    Failed calls raise `UpstreamError`; a request that protobuf refuses to encode is `BadRequest`.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        deadline_s: float,
        retry_budget_s: float = 8.0,
        router: PodRouter | None = None,
    ) -> None:
        self._router = router or PodRouter(channel, [])
        self.attachments = self._router.attachments
        self._health = health_pb2_grpc.HealthStub(channel)
        self._deadline_s = deadline_s
        self._retry_budget_s = retry_budget_s

    async def call(self, method: str, request: Message, *, idempotent: bool) -> Any:
        """One unary call, retried with backoff while the session moves between pods.

        UNAVAILABLE is retried when the service marked it retry-safe (nothing was written) or
        the request is idempotent (reads, writes with a client message id), within the retry
        budget; a session taken over after a crash answers again within the lease TTL.
        """
        deadline = time.monotonic() + self._retry_budget_s
        delay = RETRY_FIRST_DELAY_S
        session_id = getattr(request, "session_id", "")
        while True:
            stub, address = self._router.route(session_id)
            try:
                return await getattr(stub, method)(
                    request, timeout=self._deadline_s, metadata=upstream_metadata()
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in POD_DOWN_CODES and not exc.trailing_metadata():
                    self._router.failed(address)
                if not _retryable(exc, idempotent) or time.monotonic() + delay > deadline:
                    raise upstream_error(exc) from exc
                logger.info(
                    "retrying %s: %s",
                    method,
                    exc.details(),
                    extra={"session_id": session_id, "code": exc.code().name, "pod": address},
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_DELAY_S)

    async def get_session(self, session_id: str) -> SessionInfo:
        request = build_request(session_pb2.GetSessionRequest, session_id=session_id)
        reply = await self.call("GetSession", request, idempotent=True)
        session = reply.session
        return SessionInfo(
            state=state_object(session.state_json),
            version=session.version,
            created_ms=millis(session.created_at),
            last_accessed_ms=millis(session.last_accessed_at),
        )

    async def update_state(
        self, session_id: str, patch_json: str, expected_version: int | None
    ) -> StateUpdate:
        request = build_request(
            session_pb2.UpdateStateRequest,
            session_id=session_id,
            patch_json=patch_json,
            expected_version=expected_version,
            return_state=True,
        )
        reply = await self.call("UpdateState", request, idempotent=False)
        return StateUpdate(reply.version, state_object(reply.state_json))

    async def append_message(
        self,
        session_id: str,
        role: str,
        content: str,
        user: str,
        client_message_id: str,
        reply_to: int = 0,
        attachments: tuple[tuple[str, str], ...] = (),
    ) -> Appended:
        request = build_request(
            session_pb2.AppendMessageRequest,
            session_id=session_id,
            role=ROLES_BY_NAME[role],
            content=content,
            user=user,
            client_message_id=client_message_id,
            reply_to=reply_to,
            attachments=[
                common_pb2.AttachmentRef(sha256=sha, filename=name) for sha, name in attachments
            ],
        )
        reply = await self.call("AppendMessage", request, idempotent=bool(client_message_id))
        return Appended(message_json(reply.message), reply.duplicate)

    async def list_messages(
        self, session_id: str, after_seq: int, limit: int, branch: int = 0, every: bool = False
    ) -> Page:
        """A page of the active branch (or the branch through `branch`, or of every message)."""
        request = build_request(
            session_pb2.ListMessagesRequest,
            session_id=session_id,
            after_seq=after_seq,
            limit=limit,
            branch_seq=branch,
            all_branches=every,
        )
        reply = await self.call("ListMessages", request, idempotent=True)
        return Page([message_json(m) for m in reply.messages], reply.has_more, reply.last_seq)

    async def send_prompt(self, session_id: str, content: str, user: str) -> None:
        """Sends a prompt with a fresh idempotency key, so retries never start a second answer."""
        request = build_request(
            session_pb2.SendPromptRequest,
            session_id=session_id,
            content=content,
            user=user,
            client_message_id=f"gw-{uuid.uuid4().hex}",
        )
        await self.call("SendPrompt", request, idempotent=True)

    async def open_room(self, session_id: str) -> None:
        """Claims the session for the caller if nobody owns it; NOT_FOUND (UpstreamError) when
        someone else does and the caller is no member (AUTH_MODE=jwt)."""
        request = build_request(access_pb2.CreateRoomRequest, session_id=session_id)
        await self.call("CreateRoom", request, idempotent=True)

    async def cancel_answer(self, session_id: str, answer_seq: int = 0) -> bool:
        """Cancels the streaming answer (or the one at answer_seq); False if it had ended."""
        request = build_request(
            session_pb2.CancelAnswerRequest, session_id=session_id, answer_seq=answer_seq
        )
        reply = await self.call("CancelAnswer", request, idempotent=True)
        return bool(reply.cancelled)

    async def subscribe(
        self, session_id: str, cursor: Cursor | None
    ) -> AsyncGenerator[Event, None]:
        """The session's events from `cursor` (None: from now), then live, until the stream fails.

        No deadline: the stream lives as long as its sockets; callers bound the wait for CaughtUp.
        """
        async with contextlib.aclosing(self.subscribe_raw(session_id, cursor)) as events:
            async for event in events:
                yield event_from_proto(event)

    async def subscribe_raw(
        self, session_id: str, cursor: Cursor | None
    ) -> AsyncGenerator[session_pb2.SessionEvent, None]:
        """As `subscribe`, with the events as the session service sent them."""
        if cursor is None:
            request = build_request(session_pb2.SubscribeRequest, session_id=session_id)
        else:
            request = build_request(
                session_pb2.SubscribeRequest,
                session_id=session_id,
                after_seq=cursor.seq,
                after_offset=cursor.offset,
            )
        stub, address = self._router.route(session_id)
        logger.debug("subscribing", extra={"session_id": session_id, "pod": address or "any"})
        call: Any = stub.Subscribe(request, metadata=upstream_metadata())
        gone = asyncio.ensure_future(self._router.until_gone(address)) if address else None
        try:
            while True:
                read = asyncio.ensure_future(call.read())
                waits = {read} if gone is None else {read, gone}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():  # a paused or cut-off owner: do not wait for keepalive
                    read.cancel()
                    raise UpstreamError(
                        "the session's pod left the cluster",
                        status=503,
                        code="UNAVAILABLE",
                        retryable=True,
                    )
                reply = read.result()
                if reply is grpc.aio.EOF:
                    return
                yield reply.event
        except grpc.aio.AioRpcError as exc:
            if exc.code() in POD_DOWN_CODES and not exc.trailing_metadata():
                self._router.failed(address)
            raise upstream_error(exc) from exc
        finally:
            if gone is not None:
                gone.cancel()
            call.cancel()

    async def serving(self) -> bool:
        """Whether the session service's health check answers SERVING within a second."""
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_DEADLINE_S
            )
        except grpc.aio.AioRpcError as exc:
            logger.info("session service health check failed", extra={"code": exc.code().name})
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def build_request(cls: type[_Request], **fields: Any) -> _Request:
    """A request; values protobuf cannot encode (lone surrogates, overflow) are bad input."""
    try:
        return cls(**{name: value for name, value in fields.items() if value is not None})
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"cannot encode request: {exc}") from exc
