"""Search over HTTP (docs/search.md): `GET /api/search?q=WORDS[&thread=ID&limit=N&pageToken=T]`
→ {"hits": [{sessionId, seq, role, user, ts, snippet, highlights: [[start, end]], title}],
"nextPageToken"}. One SearchService call to the search indexer, with the caller's token."""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from common.channels import Channels
from common.grpc_server import CHANNEL_OPTIONS
from durablechat.v1 import search_pb2, search_pb2_grpc
from gateway.errors import GatewayError
from gateway.identity import upstream_metadata
from gateway.rest import MAX_UINT32, parse_uint
from gateway.upstream import build_request, upstream_error
from gateway.wire_json import ROLE_NAMES, millis

DEADLINE_S = 10.0


class SearchUnavailable(GatewayError):
    status = 503
    code = "UNAVAILABLE"


def hit_json(hit: search_pb2.SearchHit) -> dict[str, Any]:
    return {
        "sessionId": hit.session_id,
        "seq": hit.seq,
        "role": ROLE_NAMES.get(hit.role, "unspecified"),
        "user": hit.user,
        "ts": millis(hit.created_at),
        "snippet": hit.snippet,
        "highlights": [[r.start, r.end] for r in hit.highlights],
        "title": hit.title,
    }


class SearchRoutes:
    def __init__(self, address: str) -> None:
        self._address = address
        self._channels = Channels(CHANNEL_OPTIONS, traced=False)
        """The one channel to the search service, opened on the first search."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/search", self.search)
        app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        await self._channels.close()

    async def search(self, request: web.Request) -> web.Response:
        if not self._address:
            raise SearchUnavailable("search is not configured on this gateway")
        call = build_request(
            search_pb2.SearchMessagesRequest,
            query=request.query.get("q", ""),
            session_id=request.query.get("thread", ""),
            limit=parse_uint(request.query, "limit", 0, MAX_UINT32),
            page_token=request.query.get("pageToken", ""),
        )
        stub = self._channels.stub(self._address, search_pb2_grpc.SearchServiceStub)
        try:
            reply = await stub.SearchMessages(
                call, timeout=DEADLINE_S, metadata=upstream_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc) from exc
        return web.json_response(
            {"hits": [hit_json(h) for h in reply.hits], "nextPageToken": reply.next_page_token}
        )
