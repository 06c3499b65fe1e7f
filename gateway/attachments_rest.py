"""Attachments over HTTP (docs/attachments.md); each route is one AttachmentService call.

    POST /api/attachments?filename=NAME   body: the file's bytes  → 201 {"sha256", …}
    GET  /api/chat/session/{id}/attachments/{sha256}             → the bytes

Uploads stream: the body goes to the session service in 1 MiB chunks as it arrives (no size
limit of the gateway's own applies; the service's MAX_ATTACHMENT_BYTES does, and a declared
Content-Length over it is 413 before anything is read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import hdrs, web

from durablechat.v1 import attachments_pb2
from gateway.errors import GatewayError
from gateway.identity import upstream_metadata
from gateway.upstream import SessionClient, upstream_error

CHUNK_BYTES = 1024 * 1024
DEADLINE_S = 300.0


class TooLarge(GatewayError):
    status = 413
    code = "INVALID_ARGUMENT"


def attachment_json(a: attachments_pb2.Attachment) -> dict[str, Any]:
    return {"sha256": a.sha256, "filename": a.filename, "mimeType": a.mime_type, "size": a.size}


class AttachmentRoutes:
    def __init__(self, client: SessionClient, max_bytes: int) -> None:
        self._client = client
        self._max_bytes = max_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/attachments", self.upload)
        app.router.add_get("/api/chat/session/{session_id}/attachments/{sha256}", self.download)

    async def upload(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self._max_bytes:
            raise TooLarge(f"the file is larger than the limit of {self._max_bytes} bytes")
        filename = request.query.get("filename", "")

        async def chunks() -> AsyncIterator[attachments_pb2.UploadAttachmentRequest]:
            first = True
            async for data in request.content.iter_chunked(CHUNK_BYTES):
                yield attachments_pb2.UploadAttachmentRequest(
                    filename=filename if first else "", data=data
                )
                first = False
            if first:  # an empty body: still name the file
                yield attachments_pb2.UploadAttachmentRequest(filename=filename)

        try:
            reply = await self._client.attachments.UploadAttachment(
                chunks(), timeout=DEADLINE_S, metadata=upstream_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc) from exc
        return web.json_response(attachment_json(reply.attachment), status=201)

    async def download(self, request: web.Request) -> web.StreamResponse:
        call = self._client.attachments.DownloadAttachment(
            attachments_pb2.DownloadAttachmentRequest(
                session_id=request.match_info["session_id"],
                sha256=request.match_info["sha256"],
            ),
            timeout=DEADLINE_S,
            metadata=upstream_metadata(),
        )
        response: web.StreamResponse | None = None
        try:
            async for reply in call:
                if response is None:
                    meta = reply.attachment
                    response = web.StreamResponse(
                        headers={
                            "Content-Type": meta.mime_type or "application/octet-stream",
                            "Content-Length": str(meta.size),
                            "Content-Disposition": _disposition(meta.filename),
                            "X-Content-Type-Options": "nosniff",
                        }
                    )
                    await response.prepare(request)
                    if request.method == hdrs.METH_HEAD:  # headers only (see threads_rest)
                        call.cancel()
                        return response
                await response.write(reply.data)
        except grpc.aio.AioRpcError as exc:
            if response is None:
                raise upstream_error(exc) from exc
            raise  # mid-body: the connection is cut, the client sees a short body
        if response is None:
            raise GatewayError("the attachment service sent no data")
        await response.write_eof()
        return response


def _disposition(filename: str) -> str:
    """`attachment` with the name (RFC 6266: ASCII fallback plus the UTF-8 form)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
