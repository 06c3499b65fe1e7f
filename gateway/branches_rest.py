"""Branches over HTTP (docs/branches.md); each route is one session-service call.

    POST /api/chat/session/{id}/messages/{seq}/edit        {"content"}  → {"message", "answerSeq"}
    POST /api/chat/session/{id}/messages/{seq}/regenerate               → {"answerSeq"}
    POST /api/chat/session/{id}/branch                     {"messageSeq"} → {"headSeq"}
    POST /api/threads/{id}/fork                  {"atSeq", "sessionId"?} → {"sessionId", …}

Reading a branch: `GET /api/chat/session/{id}/messages?branch=SEQ` (or `allBranches=true`).
"""

from __future__ import annotations

from aiohttp import web

from durablechat.v1 import branches_pb2
from gateway.errors import BadRequest
from gateway.rest import MAX_UINT64, body_seq, parse_object, parse_uint
from gateway.upstream import SessionClient, build_request
from gateway.wire_json import message_json

SESSION = "/api/chat/session/{session_id}"


class BranchRoutes:
    def __init__(self, client: SessionClient) -> None:
        self._client = client

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(SESSION + "/messages/{seq}/edit", self.edit)
        app.router.add_post(SESSION + "/messages/{seq}/regenerate", self.regenerate)
        app.router.add_post(SESSION + "/branch", self.select)
        app.router.add_post("/api/threads/{session_id}/fork", self.fork)

    async def edit(self, request: web.Request) -> web.Response:
        fields = parse_object(await request.read(), frozenset({"content"}))
        if not isinstance(fields.get("content"), str):
            raise BadRequest("content must be a string")
        call = build_request(
            branches_pb2.EditMessageRequest,
            session_id=request.match_info["session_id"],
            message_seq=parse_uint(request.match_info, "seq", 0, MAX_UINT64),
            content=fields["content"],
        )
        reply = await self._client.call("EditMessage", call, idempotent=False)
        return web.json_response(
            {"message": message_json(reply.message), "answerSeq": reply.answer_seq}, status=201
        )

    async def regenerate(self, request: web.Request) -> web.Response:
        call = build_request(
            branches_pb2.RegenerateAnswerRequest,
            session_id=request.match_info["session_id"],
            message_seq=parse_uint(request.match_info, "seq", 0, MAX_UINT64),
        )
        reply = await self._client.call("RegenerateAnswer", call, idempotent=False)
        return web.json_response({"answerSeq": reply.answer_seq}, status=201)

    async def select(self, request: web.Request) -> web.Response:
        fields = parse_object(await request.read(), frozenset({"messageSeq"}))
        call = build_request(
            branches_pb2.SelectBranchRequest,
            session_id=request.match_info["session_id"],
            message_seq=body_seq(fields, "messageSeq", minimum=1),
        )
        reply = await self._client.call("SelectBranch", call, idempotent=True)
        return web.json_response({"headSeq": reply.head_seq})

    async def fork(self, request: web.Request) -> web.Response:
        fields = parse_object(await request.read(), frozenset({"atSeq", "sessionId"}))
        new_id = fields.get("sessionId", "")
        if not isinstance(new_id, str):
            raise BadRequest("sessionId must be a string")
        call = build_request(
            branches_pb2.ForkSessionRequest,
            session_id=request.match_info["session_id"],
            at_seq=body_seq(fields, "atSeq", minimum=1),
            new_session_id=new_id,
        )
        reply = await self._client.call("ForkSession", call, idempotent=False)
        body = {"sessionId": reply.session_id, "events": reply.events}
        return web.json_response({**body, "sharePath": reply.share_path}, status=201)
