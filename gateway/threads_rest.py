"""The thread list over HTTP (docs/threads.md); each route is one session-service call.

    GET    /api/threads[?archived=true&limit=N&pageToken=T]  → {"threads": [...], "nextPageToken"}
    PATCH  /api/threads/{id}   {"title"?, "pinned"?, "archived"?}  → the thread
    POST   /api/threads/{id}/read                              → the thread, unreadCount 0
    DELETE /api/threads/{id}                                   → {"seq", "purgeAt"}
    POST   /api/threads/{id}/restore                           → {"seq"}
    GET    /api/threads/{id}/export      → the session as JSON Lines (docs/export.md)
    POST   /api/threads/import[?sessionId=S]   body: JSON Lines → {"sessionId", "events", …}

Times are Unix milliseconds, as elsewhere in the HTTP API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from durablechat.v1 import export_pb2, threads_pb2
from gateway.errors import BadRequest
from gateway.rest import MAX_UINT32, parse_bool, parse_object, parse_uint
from gateway.upstream import SessionClient, build_request
from gateway.wire_json import millis

PATCH_FIELDS = frozenset({"title", "pinned", "archived"})


def thread_json(t: threads_pb2.ThreadSummary) -> dict[str, Any]:
    return {
        "sessionId": t.session_id,
        "title": t.title,
        "preview": t.preview,
        "lastActivityAt": millis(t.last_activity_at),
        "messageCount": t.message_count,
        "unreadCount": t.unread_count,
        "pinned": t.pinned,
        "archived": t.archived,
    }


class ThreadRoutes:
    def __init__(self, client: SessionClient) -> None:
        self._client = client

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/threads", self.list)
        app.router.add_patch("/api/threads/{session_id}", self.patch)
        app.router.add_post("/api/threads/{session_id}/read", self.mark_read)
        app.router.add_delete("/api/threads/{session_id}", self.delete)
        app.router.add_post("/api/threads/{session_id}/restore", self.restore)
        app.router.add_get("/api/threads/{session_id}/export", self.export)
        app.router.add_post("/api/threads/import", self.import_)

    async def list(self, request: web.Request) -> web.Response:
        call = build_request(
            threads_pb2.ListThreadsRequest,
            archived=parse_bool(request.query, "archived"),
            limit=parse_uint(request.query, "limit", 0, MAX_UINT32),
            page_token=request.query.get("pageToken", ""),
        )
        reply = await self._client.call("ListThreads", call, idempotent=True)
        return web.json_response(
            {
                "threads": [thread_json(t) for t in reply.threads],
                "nextPageToken": reply.next_page_token,
            }
        )

    async def patch(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        fields = parse_object(await request.read(), PATCH_FIELDS)
        if not fields:
            raise BadRequest('body must be a JSON object with "title", "pinned" or "archived"')
        for name in ("pinned", "archived"):
            if name in fields and not isinstance(fields[name], bool):
                raise BadRequest(f"{name} must be true or false")
        if fields.get("pinned") and fields.get("archived"):
            # Refused before the rename below, so a refused PATCH changes nothing.
            raise BadRequest("a thread cannot be pinned and archived at once")
        if "title" in fields:
            if not isinstance(fields["title"], str):
                raise BadRequest("title must be a string")
            rename = build_request(
                threads_pb2.RenameThreadRequest, session_id=sid, title=fields["title"]
            )
            await self._client.call("RenameThread", rename, idempotent=True)
        flags = build_request(
            threads_pb2.SetThreadFlagsRequest,
            session_id=sid,
            pinned=fields.get("pinned"),
            archived=fields.get("archived"),
        )
        # With no flag set this changes nothing and answers the thread as listed now.
        reply = await self._client.call("SetThreadFlags", flags, idempotent=True)
        return web.json_response(thread_json(reply.thread))

    async def mark_read(self, request: web.Request) -> web.Response:
        call = build_request(
            threads_pb2.MarkReadRequest, session_id=request.match_info["session_id"]
        )
        reply = await self._client.call("MarkRead", call, idempotent=True)
        return web.json_response(thread_json(reply.thread))

    async def delete(self, request: web.Request) -> web.Response:
        call = build_request(
            threads_pb2.DeleteThreadRequest, session_id=request.match_info["session_id"]
        )
        reply = await self._client.call("DeleteThread", call, idempotent=False)
        return web.json_response({"seq": reply.seq, "purgeAt": millis(reply.purge_at)})

    async def restore(self, request: web.Request) -> web.Response:
        call = build_request(
            threads_pb2.RestoreThreadRequest, session_id=request.match_info["session_id"]
        )
        reply = await self._client.call("RestoreThread", call, idempotent=False)
        return web.json_response({"seq": reply.seq})

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every page of ExportSession, streamed as one NDJSON body (errors before the first
        page are JSON errors; a failure later cuts the body short, which clients can see by the
        header's `events` count)."""
        sid = request.match_info["session_id"]
        call = build_request(export_pb2.ExportSessionRequest, session_id=sid)
        reply = await self._client.call("ExportSession", call, idempotent=True)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{sid}.jsonl"',
            }
        )
        await response.prepare(request)
        # HEAD: headers only. A StreamResponse sends whatever is written, even to a HEAD, and
        # the next response on a keep-alive connection would start inside that body.
        if request.method == hdrs.METH_HEAD:
            return response
        while True:
            await response.write(reply.jsonl.encode())
            if not reply.next_page_token:
                break
            call = build_request(
                export_pb2.ExportSessionRequest, session_id=sid, page_token=reply.next_page_token
            )
            reply = await self._client.call("ExportSession", call, idempotent=True)
        await response.write_eof()
        return response

    async def import_(self, request: web.Request) -> web.Response:
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not UTF-8: {exc}") from exc
        call = build_request(
            export_pb2.ImportSessionRequest,
            session_id=request.query.get("sessionId", ""),
            jsonl=text,
        )
        reply = await self._client.call("ImportSession", call, idempotent=False)
        return web.json_response(
            {"sessionId": reply.session_id, "events": reply.events, "sharePath": reply.share_path},
            status=201,
        )
