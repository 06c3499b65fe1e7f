"""`durablechat.v1.SessionService`: validate → call the owner → convert. Errors via `status_for`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields

from durablechat.v1 import session_pb2, session_pb2_grpc
from session_service import convert, validate
from session_service.actor import SessionActor
from session_service.errors import InvalidArgument, SessionError, status_for
from session_service.limits import Limits
from session_service.merge_patch import BadJson, dump_json, parse_json
from session_service.registry import Registry

logger = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


def _checked(request: pb_message.Message) -> str:
    """Refuses unknown fields and returns the validated session id."""
    if len(unknown_fields.UnknownFieldSet(request)):
        raise InvalidArgument("request has unknown fields; is the client newer than the server?")
    return validate.session_id(request.session_id)  # type: ignore[attr-defined]


async def _abort(context: Context, exc: BaseException) -> None:
    code, details = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        logger.error("internal error", exc_info=exc)
    await context.abort(code, details)


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Thin transport layer over the registry of session owners."""

    def __init__(self, registry: Registry, limits: Limits) -> None:
        self._registry = registry
        self._limits = limits

    async def _run(self, context: Context, body: Callable[[], Awaitable[T]]) -> T:
        try:
            return await body()
        except Exception as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    async def GetSession(
        self, request: session_pb2.GetSessionRequest, context: Context
    ) -> session_pb2.GetSessionResponse:
        async def body() -> session_pb2.GetSessionResponse:
            sid = _checked(request)

            async def read(actor: SessionActor) -> session_pb2.GetSessionResponse:
                s = actor.read()
                return session_pb2.GetSessionResponse(session=convert.session(s, s.state_json()))

            return await self._registry.call(sid, read)

        return await self._run(context, body)

    async def UpdateState(
        self, request: session_pb2.UpdateStateRequest, context: Context
    ) -> session_pb2.UpdateStateResponse:
        async def body() -> session_pb2.UpdateStateResponse:
            sid = _checked(request)
            if len(request.patch_json.encode()) > self._limits.max_state_bytes:
                raise InvalidArgument(
                    f"patch_json is larger than the state limit of {self._limits.max_state_bytes}"
                )
            try:
                patch = parse_json(request.patch_json)
            except BadJson as exc:
                raise InvalidArgument(f"patch_json: {exc}") from exc
            if not isinstance(patch, dict):
                raise InvalidArgument("patch_json must be a JSON object (the state is an object)")
            expected = request.expected_version if request.HasField("expected_version") else None

            async def update(actor: SessionActor) -> session_pb2.UpdateStateResponse:
                version, seq = await actor.update_state(patch, dump_json(patch), expected)
                state = actor.session.state_json() if request.return_state else ""
                return session_pb2.UpdateStateResponse(
                    version=version, seq=seq, state_json=state, epoch=actor.session.epoch
                )

            return await self._registry.call(sid, update)

        return await self._run(context, body)

    async def AppendMessage(
        self, request: session_pb2.AppendMessageRequest, context: Context
    ) -> session_pb2.AppendMessageResponse:
        async def body() -> session_pb2.AppendMessageResponse:
            sid = _checked(request)
            role = convert.ROLE_FROM_PROTO.get(request.role)
            if role is None:
                raise InvalidArgument("role must be ROLE_USER, ROLE_ASSISTANT or ROLE_SYSTEM")
            content = validate.content(request.content, self._limits.max_content_bytes)
            user = validate.name(request.user, "user")
            client_id = validate.name(request.client_message_id, "client_message_id")

            async def append(actor: SessionActor) -> session_pb2.AppendMessageResponse:
                message, duplicate = await actor.append_message(role, content, user, client_id)
                return session_pb2.AppendMessageResponse(
                    message=convert.message(message),
                    duplicate=duplicate,
                    epoch=actor.session.epoch,
                )

            return await self._registry.call(sid, append)

        return await self._run(context, body)

    async def ListMessages(
        self, request: session_pb2.ListMessagesRequest, context: Context
    ) -> session_pb2.ListMessagesResponse:
        async def body() -> session_pb2.ListMessagesResponse:
            sid = _checked(request)
            limit = request.limit or self._limits.default_page_size
            if limit > self._limits.max_page_size:
                raise InvalidArgument(f"limit must be at most {self._limits.max_page_size}")

            async def page(actor: SessionActor) -> session_pb2.ListMessagesResponse:
                s = actor.read()
                messages, has_more = s.messages_after(request.after_seq, limit)
                return session_pb2.ListMessagesResponse(
                    messages=[convert.message(m) for m in messages],
                    has_more=has_more,
                    last_seq=s.last_seq,
                )

            return await self._registry.call(sid, page)

        return await self._run(context, body)

    async def SendPrompt(
        self, request: session_pb2.SendPromptRequest, context: Context
    ) -> session_pb2.SendPromptResponse:
        async def body() -> session_pb2.SendPromptResponse:
            sid = _checked(request)
            content = validate.content(request.content, self._limits.max_content_bytes)
            user = validate.name(request.user, "user")
            client_id = validate.name(request.client_message_id, "client_message_id")

            async def prompt(actor: SessionActor) -> session_pb2.SendPromptResponse:
                message, answer_seq, duplicate = await actor.send_prompt(content, user, client_id)
                return session_pb2.SendPromptResponse(
                    user_message=convert.message(message),
                    answer_seq=answer_seq,
                    duplicate=duplicate,
                    epoch=actor.session.epoch,
                )

            return await self._registry.call(sid, prompt)

        return await self._run(context, body)

    async def Subscribe(
        self, request: session_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[session_pb2.SubscribeResponse]:
        try:
            sid = _checked(request)
            after_seq = request.after_seq if request.HasField("after_seq") else None
            actor = await self._registry.get(sid)
            subscriber, replay = actor.subscribe(after_seq, request.after_offset)
        except Exception as exc:
            await _abort(context, exc)
            return
        epoch = actor.session.epoch
        try:
            for event in replay:
                yield convert.event(event, epoch)
            while True:
                yield convert.event(await subscriber.next(), epoch)
        except SessionError as exc:
            await _abort(context, exc)
        finally:
            actor.unsubscribe(subscriber)
