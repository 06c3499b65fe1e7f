"""Seeds 001/003 over HTTP: a session's state and messages, and the gateway's health."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from durablechat.v1 import session_pb2
from gateway.errors import BadRequest, error_body
from gateway.history import newest_that_fit, object_with_list
from gateway.upstream import SessionClient, build_request
from gateway.wire_json import RATINGS_BY_NAME, ROLES_BY_NAME

RESERVED_KEYS = ("messages", "createdAt", "lastAccessedAt", "olderMessages")
"""Top-level keys the GET answer fills in itself; a state patch may not set them."""
MESSAGE_FIELDS = frozenset({"role", "content", "user", "clientMessageId", "replyTo", "attachments"})
FEEDBACK_FIELDS = frozenset({"rating", "comment", "user"})
DEFAULT_PAGE_SIZE = 100
MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class NewMessage:
    role: str
    content: str
    user: str
    client_message_id: str
    reply_to: int = 0
    attachments: tuple[tuple[str, str], ...] = ()


def parse_json(body: bytes) -> Any:
    """The body as JSON: UTF-8, no NaN/Infinity, and only text protobuf can carry."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    return value


def parse_patch(body: bytes) -> dict[str, Any]:
    """A state merge patch: a JSON object without the reserved keys."""
    patch = parse_json(body)
    if not isinstance(patch, dict):
        raise BadRequest("body must be a JSON object")
    for key in RESERVED_KEYS:
        if key in patch:
            raise BadRequest(f"{key!r} is reserved and cannot be set in the state")
    return patch


def parse_object(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object with no field outside `allowed`."""
    fields = parse_json(body)
    if not isinstance(fields, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; allowed: {sorted(allowed)}")
    return fields


def parse_new_message(body: bytes) -> NewMessage:
    """`{"role", "content", "user"?, "clientMessageId"?}` with exactly those fields and types."""
    fields = parse_object(body, MESSAGE_FIELDS)
    role = fields.get("role")
    if not isinstance(role, str) or role not in ROLES_BY_NAME:
        raise BadRequest(f"role must be one of {sorted(ROLES_BY_NAME)}")
    return NewMessage(
        role=role,
        content=_string(fields, "content", required=True),
        user=_string(fields, "user", required=False),
        client_message_id=_string(fields, "clientMessageId", required=False),
        reply_to=body_seq(fields, "replyTo"),
        attachments=_refs(fields.get("attachments", [])),
    )


def _refs(value: Any) -> tuple[tuple[str, str], ...]:
    """`[{"sha256", "filename"?}]` → ((sha256, filename), ...)."""
    if not isinstance(value, list):
        raise BadRequest("attachments must be a list of {sha256, filename}")
    refs = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"sha256", "filename"}:
            raise BadRequest("each attachment must be an object with sha256 and filename")
        sha, name = item.get("sha256"), item.get("filename", "")
        if not isinstance(sha, str) or not isinstance(name, str):
            raise BadRequest("sha256 and filename must be strings")
        refs.append((sha, name))
    return tuple(refs)


def parse_feedback(body: bytes) -> tuple[int, str, str]:
    """`{"rating": "up" | "down" | null, "comment"?, "user"?}` → (rating, comment, user)."""
    fields = parse_object(body, FEEDBACK_FIELDS)
    rating = fields.get("rating")
    if not (rating is None or isinstance(rating, str)) or rating not in RATINGS_BY_NAME:
        raise BadRequest('rating must be "up", "down" or null')
    comment = _string(fields, "comment", required=False)
    return RATINGS_BY_NAME[rating], comment, _string(fields, "user", required=False)


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    """A `true`/`false` query parameter (absent: false)."""
    raw = query.get(name, "false")
    if raw not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def parse_uint(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """A non-negative integer query parameter, at most `maximum`."""
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) > maximum:
        raise BadRequest(f"{name} must be an integer from 0 to {maximum}, got {raw!r}")
    return int(raw)


class RestRoutes:
    """The chat-session HTTP API; each route is one session-service call, or pages of one."""

    def __init__(self, client: SessionClient, max_history_bytes: int) -> None:
        self._client = client
        self._max_history_bytes = max_history_bytes

    async def get_session(self, request: web.Request) -> web.Response:
        """The state with the newest messages that fit MAX_HISTORY_REPLY_BYTES; when older ones
        were left out, `olderMessages: {omitted, beforeSeq}` (gateway/history.py)."""
        session_id = request.match_info["session_id"]
        session = await self._client.get_session(session_id)
        tail = await newest_that_fit(
            self._client, session_id, self._max_history_bytes, _encode_message
        )
        fields = {key: value for key, value in session.state.items() if key not in RESERVED_KEYS}
        fields["createdAt"] = session.created_ms
        fields["lastAccessedAt"] = session.last_accessed_ms
        if tail.omitted:
            fields["olderMessages"] = {"omitted": tail.omitted, "beforeSeq": tail.before_seq}
        return web.Response(
            body=object_with_list(fields, "messages", tail.items),
            content_type="application/json",
            headers=_etag(session.version),
        )

    async def put_session(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        expected: int | None = None
        if "expectedVersion" in request.query:
            expected = parse_uint(request.query, "expectedVersion", 0, MAX_UINT64)
        patch = parse_patch(await request.read())
        update = await self._client.update_state(
            session_id, json.dumps(patch, ensure_ascii=False), expected
        )
        return web.json_response(
            {"version": update.version, "state": update.state}, headers=_etag(update.version)
        )

    async def post_message(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        new = parse_new_message(await request.read())
        appended = await self._client.append_message(
            session_id,
            new.role,
            new.content,
            new.user,
            new.client_message_id,
            new.reply_to,
            new.attachments,
        )
        return web.json_response(appended.message, status=200 if appended.duplicate else 201)

    async def set_feedback(self, request: web.Request) -> web.Response:
        """`POST /api/chat/session/{id}/messages/{seq}/feedback`: rates an assistant answer."""
        seq = parse_uint(request.match_info, "seq", 0, MAX_UINT64)
        rating, comment, user = parse_feedback(await request.read())
        call = build_request(
            session_pb2.SetFeedbackRequest,
            session_id=request.match_info["session_id"],
            message_seq=seq,
            rating=rating,
            comment=comment,
            user=user,
        )
        reply = await self._client.call("SetFeedback", call, idempotent=True)
        return web.json_response({"seq": reply.seq})

    async def cancel_answer(self, request: web.Request) -> web.Response:
        """`POST /api/chat/session/{id}/cancel[?answerSeq=N]`: stored before the reply."""
        session_id = request.match_info["session_id"]
        answer_seq = parse_uint(request.query, "answerSeq", 0, MAX_UINT64)
        cancelled = await self._client.cancel_answer(session_id, answer_seq)
        return web.json_response({"cancelled": cancelled})

    async def list_messages(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        after = parse_uint(request.query, "after", 0, MAX_UINT64)
        limit = parse_uint(request.query, "limit", DEFAULT_PAGE_SIZE, MAX_UINT32)
        branch = parse_uint(request.query, "branch", 0, MAX_UINT64)
        every = parse_bool(request.query, "allBranches")
        page = await self._client.list_messages(session_id, after, limit, branch, every)
        return web.json_response(
            {"messages": page.messages, "hasMore": page.has_more, "lastSeq": page.last_seq}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        if await self._client.serving():
            return web.json_response({"status": "ok"})
        return web.json_response(
            error_body("UNAVAILABLE", "session service is not serving"), status=503
        )


def body_seq(fields: Mapping[str, Any], name: str, minimum: int = 0) -> int:
    """A message seq in a JSON body (absent: 0), at least `minimum`."""
    value = fields.get(name, 0)
    if type(value) is not int or not minimum <= value <= MAX_UINT64:
        kind = "a positive" if minimum else "a non-negative"
        raise BadRequest(f"{name} must be a message seq ({kind} integer)")
    return value


def _string(fields: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = fields.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _encode_message(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
