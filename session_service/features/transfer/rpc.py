"""ExportSession and ImportSession of `durablechat.v1.SessionService` (export.proto,
docs/export.md), routed to the owner like every call (session_service/rpc/dispatch.py). An
import file is checked here, before the call is routed; the owner stores it."""

from __future__ import annotations

import re
import secrets

from durablechat.v1 import export_pb2
from session_service.actor.access import OWNER, Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.features.transfer import export_format
from session_service.features.transfer.ops import TransferOps
from session_service.limits import Limits
from session_service.log.events import now_ms
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher, Local
from session_service.rpc.methods import EXPORT_SESSION, IMPORT_SESSION
from session_service.store import footprint

PAGE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"([0-9]{1,20})\.([0-9]{1,20})")


def _page_token(token: str) -> tuple[int | None, int]:
    """(log seq the export is pinned to, first line) of a page token."""
    if not token:
        return None, 0
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise InvalidArgument("page_token is not one ExportSession gave out")
    return int(match.group(1)), int(match.group(2))


class TransferRpcs:
    """ExportSession and ImportSession, routed through the shared dispatcher; BranchRpcs
    calls them too (ForkSession)."""

    def __init__(self, dispatch: Dispatcher, limits: Limits) -> None:
        self._dispatch = dispatch
        self._limits = limits

    async def ExportSession(
        self, request: export_pb2.ExportSessionRequest, context: Context
    ) -> export_pb2.ExportSessionResponse:
        def prepare(caller: Caller) -> Local[export_pb2.ExportSessionResponse]:
            pinned, start = _page_token(request.page_token)

            async def export(actor: SessionActor) -> export_pb2.ExportSessionResponse:
                lines, upto = TransferOps(actor).export_lines(caller, pinned, request.at_seq)
                page: list[str] = []
                size = 0
                for line in lines[start:]:
                    size += len(line) + 1
                    if page and size > PAGE_BYTES:
                        break
                    page.append(line + "\n")
                end = start + len(page)
                more = end < len(lines)
                return export_pb2.ExportSessionResponse(
                    jsonl="".join(page), next_page_token=f"{upto}.{end}" if more else ""
                )

            return export

        return await self._dispatch.unary(EXPORT_SESSION, request, context, prepare)

    async def ImportSession(
        self, request: export_pb2.ImportSessionRequest, context: Context
    ) -> export_pb2.ImportSessionResponse:
        if getattr(request, "session_id", None) == "":  # as CreateRoom: a fresh unguessable id
            request = export_pb2.ImportSessionRequest(
                session_id=secrets.token_hex(32), jsonl=request.jsonl
            )
        sid = getattr(request, "session_id", "")

        def prepare(caller: Caller) -> Local[export_pb2.ImportSessionResponse]:
            size = len(request.jsonl.encode())
            if size > self._limits.max_import_bytes:
                raise footprint.import_too_large(size, self._limits.max_import_bytes)
            events = export_format.parse_import(request.jsonl, self._limits, now_ms())

            async def store(actor: SessionActor) -> export_pb2.ImportSessionResponse:
                count = await TransferOps(actor).import_events(caller, events)
                role = OWNER if caller.enforced else ""
                return export_pb2.ImportSessionResponse(
                    session_id=sid,
                    events=count,
                    role=convert.ACCESS_ROLE_TO_PROTO[role],
                    share_path=convert.share_path(sid),
                    epoch=actor.session.epoch,
                )

            return store

        return await self._dispatch.unary(IMPORT_SESSION, request, context, prepare)
