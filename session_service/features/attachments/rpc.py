"""Attachments over gRPC (attachments.proto, docs/attachments.md).

- `AttachmentRpcs.GetAttachment` (SessionService, routed to the owner like every call, through
  the dispatcher, session_service/rpc/dispatch.py): a file
  a message of the session refers to, for a reader of the session; NOT_FOUND otherwise.
- `AttachmentServicer` (AttachmentService, any pod): uploads are stored here
  (attachment_store.py); a download first asks GetAttachment as the caller (through this pod,
  so it reaches the owner), then streams the bytes from ATTACHMENTS_DIR, which every pod shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from common.auth import Verifier
from common.channels import Channels
from common.revocation import Revocations
from common.wire import AUTHORIZATION, COOKIE_HEADER
from durablechat.v1 import attachments_pb2, attachments_pb2_grpc, session_pb2_grpc
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument, NotFound, StoreUnavailable
from session_service.rpc.dispatch import Context, Dispatcher, Local
from session_service.rpc.handling import abort, known
from session_service.rpc.identify import identify
from session_service.rpc.methods import GET_ATTACHMENT
from session_service.store.attachments import CHUNK_BYTES, AttachmentStore, valid_sha
from session_service.store.quotas import Quotas

NOT_FOUND = "attachment not found"


class AttachmentRpcs:
    """GetAttachment of SessionService, routed through the shared dispatcher."""

    def __init__(self, dispatch: Dispatcher) -> None:
        self._dispatch = dispatch

    async def GetAttachment(
        self, request: attachments_pb2.GetAttachmentRequest, context: Context
    ) -> attachments_pb2.GetAttachmentResponse:
        def prepare(caller: Caller) -> Local[attachments_pb2.GetAttachmentResponse]:
            sha = valid_sha(request.sha256)

            async def get(actor: SessionActor) -> attachments_pb2.GetAttachmentResponse:
                ref = actor.read(caller).attachment(sha)
                if ref is None:
                    raise NotFound(NOT_FOUND)
                _, name, mime, size = ref
                return attachments_pb2.GetAttachmentResponse(
                    attachment=attachments_pb2.Attachment(
                        sha256=sha, filename=name, mime_type=mime, size=size
                    )
                )

            return get

        return await self._dispatch.unary(GET_ATTACHMENT, request, context, prepare)


class AttachmentServicer(attachments_pb2_grpc.AttachmentServiceServicer):
    def __init__(
        self,
        store: AttachmentStore,
        quotas: Quotas,
        verifier: Verifier,
        revocations: Revocations,
        own_address: Callable[[], str],
    ) -> None:
        self._store = store
        self._quotas = quotas
        self._verifier = verifier
        self._revocations = revocations
        self._own_address = own_address
        self._channels = Channels(options=(), traced=False)

    def _sessions(self) -> session_pb2_grpc.SessionServiceStub:
        """This pod's own SessionService (it routes to the session's owner)."""
        return self._channels.stub(self._own_address(), session_pb2_grpc.SessionServiceStub)

    async def close(self) -> None:
        await self._channels.close()

    async def UploadAttachment(
        self,
        request_iterator: AsyncIterator[attachments_pb2.UploadAttachmentRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> attachments_pb2.UploadAttachmentResponse:
        try:
            user, _ = await identify(context, self._verifier, self._revocations)
            await self._quotas.check_request(user)
            first = await anext(aiter(request_iterator), None)
            if first is None:
                raise InvalidArgument("an upload needs at least one chunk (with the filename)")
            known(first)

            async def chunks() -> AsyncIterator[bytes]:
                yield first.data
                async for chunk in request_iterator:
                    known(chunk)  # (an undecodable chunk is INVALID_ARGUMENT too)
                    if chunk.filename:
                        raise InvalidArgument("only the first chunk names the file")
                    yield chunk.data

            stored = await self._store.save(user, first.filename, chunks())
        except Exception as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises
        return attachments_pb2.UploadAttachmentResponse(
            attachment=attachments_pb2.Attachment(
                sha256=stored.sha256,
                filename=stored.filename,
                mime_type=stored.mime_type,
                size=stored.size,
            )
        )

    async def DownloadAttachment(
        self,
        request: attachments_pb2.DownloadAttachmentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[attachments_pb2.DownloadAttachmentResponse]:
        try:
            known(request)
            forwarded = tuple(
                (k, str(v)) for k, v in context.invocation_metadata() or () if k in AUTH
            )
            call: Any = self._sessions().GetAttachment(
                attachments_pb2.GetAttachmentRequest(
                    session_id=request.session_id, sha256=request.sha256
                ),
                metadata=forwarded,
                timeout=10,
            )
            meta = await call
            path = self._store.path(meta.attachment.sha256)
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            await abort(
                context,
                StoreUnavailable("the file is not on this pod's disk: share ATTACHMENTS_DIR"),
            )
            return
        except Exception as exc:
            await abort(context, exc)
            return
        with handle:
            first = True
            while data := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                reply = attachments_pb2.DownloadAttachmentResponse(data=data)
                if first:
                    reply.attachment.CopyFrom(meta.attachment)
                    first = False
                yield reply
            if first:  # an empty file: still one message with the metadata
                yield attachments_pb2.DownloadAttachmentResponse(attachment=meta.attachment)


AUTH = (AUTHORIZATION, COOKIE_HEADER)
"""Metadata the download's access check carries on, as the caller's own call would."""
