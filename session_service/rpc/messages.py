"""The seed RPCs of `durablechat.v1.SessionService` (session.proto): a session's state and
messages, prompts and cancels. Each validates its request, then hands the dispatcher
(dispatch.py) what to do with the owner actor; the dispatcher authenticates and routes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from durablechat.v1 import common_pb2, session_pb2
from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.messages import MessageOps
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.limits import Limits
from session_service.log import validate
from session_service.log.merge_patch import BadJson, dump_json, parse_json
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher
from session_service.rpc.methods import (
    APPEND_MESSAGE,
    CANCEL_ANSWER,
    GET_SESSION,
    LIST_MESSAGES,
    SEND_PROMPT,
    UPDATE_STATE,
)

PAGE_BYTES = 4 * 1024 * 1024
"""A ListMessages page holds fewer than `limit` messages when they would pass this size
(`has_more` says so), so every page fits in one gRPC message whatever the messages hold."""


class MessageRpcs:
    """A session's state and messages; routed to the owner through the dispatcher."""

    def __init__(self, dispatch: Dispatcher, limits: Limits) -> None:
        self._dispatch = dispatch
        self._limits = limits

    async def GetSession(
        self, request: session_pb2.GetSessionRequest, context: Context
    ) -> session_pb2.GetSessionResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.GetSessionResponse]]:
            async def read(actor: SessionActor) -> session_pb2.GetSessionResponse:
                s = actor.read(caller)
                role = access.role_of(s, caller)
                return session_pb2.GetSessionResponse(
                    session=convert.session(s, s.state_json(), role)
                )

            return read

        return await self._dispatch.unary(GET_SESSION, request, context, prepare)

    async def UpdateState(
        self, request: session_pb2.UpdateStateRequest, context: Context
    ) -> session_pb2.UpdateStateResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.UpdateStateResponse]]:
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
            patch_json = dump_json(patch)

            async def update(actor: SessionActor) -> session_pb2.UpdateStateResponse:
                version, seq = await MessageOps(actor).update_state(
                    patch, patch_json, expected, caller
                )
                state = actor.session.state_json() if request.return_state else ""
                return session_pb2.UpdateStateResponse(
                    version=version, seq=seq, state_json=state, epoch=actor.session.epoch
                )

            return update

        return await self._dispatch.unary(UPDATE_STATE, request, context, prepare)

    async def AppendMessage(
        self, request: session_pb2.AppendMessageRequest, context: Context
    ) -> session_pb2.AppendMessageResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.AppendMessageResponse]]:
            role = convert.ROLE_FROM_PROTO.get(request.role)
            if role is None:
                raise InvalidArgument("role must be ROLE_USER, ROLE_ASSISTANT or ROLE_SYSTEM")
            content = validate.content(request.content, self._limits.max_content_bytes)
            user = validate.name(request.user, "user")
            client_id = validate.name(request.client_message_id, "client_message_id")
            attached = tuple((a.sha256, a.filename) for a in request.attachments)

            async def append(actor: SessionActor) -> session_pb2.AppendMessageResponse:
                message, duplicate = await MessageOps(actor).append_message(
                    role, content, user, client_id, caller, request.reply_to, attached
                )
                return session_pb2.AppendMessageResponse(
                    message=convert.message(message, parent=actor.session.tree.parent[message.seq]),
                    duplicate=duplicate,
                    epoch=actor.session.epoch,
                )

            return append

        return await self._dispatch.unary(APPEND_MESSAGE, request, context, prepare)

    async def ListMessages(
        self, request: session_pb2.ListMessagesRequest, context: Context
    ) -> session_pb2.ListMessagesResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.ListMessagesResponse]]:
            limit = request.limit or self._limits.default_page_size
            if limit > self._limits.max_page_size:
                raise InvalidArgument(f"limit must be at most {self._limits.max_page_size}")

            async def page(actor: SessionActor) -> session_pb2.ListMessagesResponse:
                s = actor.read(caller)
                if request.branch_seq:
                    s.require_message(request.branch_seq, "branch_seq")
                seqs, has_more = s.page_seqs(
                    request.after_seq, limit, request.branch_seq, request.all_branches
                )
                # As of the page: a client resumes from last_seq with no gap.
                last_seq = s.last_seq
                feedback = {seq: dict(s.feedback[seq]) for seq in seqs if seq in s.feedback}
                messages = await actor.messages_at(seqs)  # older ones: read from Redis
                page: list[common_pb2.Message] = []
                size = 0
                for m in messages:  # pages also end at PAGE_BYTES: gRPC caps message size
                    converted = convert.message(m, feedback.get(m.seq), s.tree.parent[m.seq])
                    size += converted.ByteSize()
                    if page and size > PAGE_BYTES:
                        has_more = True
                        break
                    page.append(converted)
                return session_pb2.ListMessagesResponse(
                    messages=page, has_more=has_more, last_seq=last_seq
                )

            return page

        return await self._dispatch.unary(LIST_MESSAGES, request, context, prepare)

    async def SendPrompt(
        self, request: session_pb2.SendPromptRequest, context: Context
    ) -> session_pb2.SendPromptResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.SendPromptResponse]]:
            content = validate.content(request.content, self._limits.max_content_bytes)
            user = validate.name(request.user, "user")
            client_id = validate.name(request.client_message_id, "client_message_id")
            attached = tuple((a.sha256, a.filename) for a in request.attachments)

            async def prompt(actor: SessionActor) -> session_pb2.SendPromptResponse:
                message, answer_seq, duplicate = await MessageOps(actor).send_prompt(
                    content, user, client_id, caller, request.reply_to, attached
                )
                return session_pb2.SendPromptResponse(
                    user_message=convert.message(
                        message, parent=actor.session.tree.parent[message.seq]
                    ),
                    answer_seq=answer_seq,
                    duplicate=duplicate,
                    epoch=actor.session.epoch,
                )

            return prompt

        return await self._dispatch.unary(SEND_PROMPT, request, context, prepare)

    async def CancelAnswer(
        self, request: session_pb2.CancelAnswerRequest, context: Context
    ) -> session_pb2.CancelAnswerResponse:
        def prepare(
            caller: Caller,
        ) -> Callable[[SessionActor], Awaitable[session_pb2.CancelAnswerResponse]]:
            async def cancel(actor: SessionActor) -> session_pb2.CancelAnswerResponse:
                seq, cancelled = await actor.answers.cancel(request.answer_seq, caller)
                return session_pb2.CancelAnswerResponse(
                    answer_seq=seq, cancelled=cancelled, epoch=actor.session.epoch
                )

            return cancel

        return await self._dispatch.unary(CANCEL_ANSWER, request, context, prepare)
