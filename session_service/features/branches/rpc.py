"""The branch RPCs of `durablechat.v1.SessionService` (branches.proto, docs/branches.md). Edits,
regenerations and selections are routed to the owner (session_service/rpc/dispatch.py);
ForkSession is an export of one branch (from its owner) imported into a new session (by that
session's owner), both as the caller, through the transfer RPCs (features/transfer/rpc.py)."""

from __future__ import annotations

import json
import secrets

from durablechat.v1 import branches_pb2, export_pb2
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.features.branches.ops import BranchOps
from session_service.features.transfer.rpc import TransferRpcs
from session_service.limits import Limits
from session_service.log import validate
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher, Local
from session_service.rpc.handling import abort, known
from session_service.rpc.methods import EDIT_MESSAGE, REGENERATE_ANSWER, SELECT_BRANCH
from session_service.store.attachments import AttachmentStore


def attachment_shas(jsonl: str) -> set[str]:
    """The files an export's messages refer to."""
    shas: set[str] = set()
    for line in jsonl.split("\n"):
        if '"attachments"' in line:
            shas.update(ref["sha256"] for ref in json.loads(line).get("attachments", []))
    return shas


class BranchRpcs:
    """Edits, regenerations and selections routed through the shared dispatcher; forks
    through the transfer RPCs, as the caller."""

    def __init__(
        self,
        dispatch: Dispatcher,
        limits: Limits,
        attachments: AttachmentStore,
        transfer: TransferRpcs,
    ) -> None:
        self._dispatch = dispatch
        self._limits = limits
        self._attachment_store = attachments
        self._transfer = transfer

    async def EditMessage(
        self, request: branches_pb2.EditMessageRequest, context: Context
    ) -> branches_pb2.EditMessageResponse:
        def prepare(caller: Caller) -> Local[branches_pb2.EditMessageResponse]:
            content = validate.content(request.content, self._limits.max_content_bytes)

            async def edit(actor: SessionActor) -> branches_pb2.EditMessageResponse:
                message, answer_seq = await BranchOps(actor).edit_message(
                    caller, request.message_seq, content
                )
                parent = actor.session.tree.parent[message.seq]
                return branches_pb2.EditMessageResponse(
                    message=convert.message(message, parent=parent),
                    answer_seq=answer_seq,
                    epoch=actor.session.epoch,
                )

            return edit

        return await self._dispatch.unary(EDIT_MESSAGE, request, context, prepare)

    async def RegenerateAnswer(
        self, request: branches_pb2.RegenerateAnswerRequest, context: Context
    ) -> branches_pb2.RegenerateAnswerResponse:
        def prepare(caller: Caller) -> Local[branches_pb2.RegenerateAnswerResponse]:
            async def regenerate(actor: SessionActor) -> branches_pb2.RegenerateAnswerResponse:
                answer_seq = await BranchOps(actor).regenerate(caller, request.message_seq)
                return branches_pb2.RegenerateAnswerResponse(
                    answer_seq=answer_seq, epoch=actor.session.epoch
                )

            return regenerate

        return await self._dispatch.unary(REGENERATE_ANSWER, request, context, prepare)

    async def SelectBranch(
        self, request: branches_pb2.SelectBranchRequest, context: Context
    ) -> branches_pb2.SelectBranchResponse:
        def prepare(caller: Caller) -> Local[branches_pb2.SelectBranchResponse]:
            async def select(actor: SessionActor) -> branches_pb2.SelectBranchResponse:
                head, seq = await BranchOps(actor).select_branch(caller, request.message_seq)
                return branches_pb2.SelectBranchResponse(
                    head_seq=head, seq=seq, epoch=actor.session.epoch
                )

            return select

        return await self._dispatch.unary(SELECT_BRANCH, request, context, prepare)

    async def ForkSession(
        self, request: branches_pb2.ForkSessionRequest, context: Context
    ) -> branches_pb2.ForkSessionResponse:
        try:
            known(request)
            if not request.at_seq:
                raise InvalidArgument("at_seq must name the message to fork at")
        except InvalidArgument as exc:
            await abort(context, exc)
        text, token = "", ""
        while True:  # each call aborts this one with its own status when it fails
            page = await self._transfer.ExportSession(
                export_pb2.ExportSessionRequest(
                    session_id=request.session_id, page_token=token, at_seq=request.at_seq
                ),
                context,
            )
            text, token = text + page.jsonl, page.next_page_token
            if not token or len(text) > self._limits.max_import_bytes:
                break  # (a copy too large is refused by ImportSession, naming the limit)
        try:  # the caller read these files' refs: they may attach them to the copy
            caller, _ = await self._dispatch.identify(context)
            await self._attachment_store.grant(attachment_shas(text), caller.user)
        except Exception as exc:
            await abort(context, exc)
        imported = await self._transfer.ImportSession(
            export_pb2.ImportSessionRequest(
                session_id=request.new_session_id or secrets.token_hex(32), jsonl=text
            ),
            context,
        )
        return branches_pb2.ForkSessionResponse(
            session_id=imported.session_id,
            events=imported.events,
            role=imported.role,
            share_path=imported.share_path,
        )
