"""`durablechat.v1.SessionService`: one method per RPC, each handing its call to the class that
serves it. Routing (serve here or forward to the owner, quotas, NOT_FOUND for unknown sessions,
retry hints on errors) is the dispatcher's (rpc/dispatch.py), shared by every RPC class; the
RPCs' own validation and replies are in rpc/messages.py and features/<name>/rpc.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from common.auth import AuthConfig, Verifier
from common.planes import ClusterKey
from common.revocation import Revocations
from durablechat.v1 import (
    access_pb2,
    attachments_pb2,
    branches_pb2,
    export_pb2,
    session_pb2,
    session_pb2_grpc,
    threads_pb2,
)
from session_service.cluster.peers import Peers
from session_service.cluster.registry import Registry
from session_service.cluster.routing import Router
from session_service.features.attachments.rpc import AttachmentRpcs
from session_service.features.branches.rpc import BranchRpcs
from session_service.features.feedback.rpc import FeedbackRpcs
from session_service.features.rooms.rpc import RoomRpcs
from session_service.features.threads.rpc import ThreadRpcs
from session_service.features.transfer.rpc import TransferRpcs
from session_service.limits import Limits
from session_service.rpc.dispatch import Dispatcher
from session_service.rpc.messages import MessageRpcs
from session_service.rpc.stream_caps import StreamCaps
from session_service.store.attachments import AttachmentStore
from session_service.store.threads import ThreadStore
from session_service.store.usage import UsageStore

Context = grpc.aio.ServicerContext[Any, Any]


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Thin transport layer over this pod's owners and its peers: every RPC class shares one
    Dispatcher (and so one count of the Subscribe streams served here)."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        peers: Peers,
        limits: Limits,
        usage: UsageStore,
        threads: ThreadStore,
        verifier: Verifier | None = None,
        revocations: Revocations | None = None,
        *,
        attachments: AttachmentStore,
        cluster: ClusterKey | None = None,
    ) -> None:
        self._dispatch = Dispatcher(
            registry,
            router,
            peers,
            verifier or Verifier(AuthConfig()),
            revocations or Revocations(None),
            cluster or ClusterKey(),
            StreamCaps(limits.max_streams_per_user),
        )
        self._messages = MessageRpcs(self._dispatch, limits)
        self._rooms = RoomRpcs(self._dispatch)
        self._threads = ThreadRpcs(self._dispatch, threads, usage)
        self._feedback = FeedbackRpcs(self._dispatch)
        self._attachments = AttachmentRpcs(self._dispatch)
        self._transfer = TransferRpcs(self._dispatch, limits)
        self._branches = BranchRpcs(self._dispatch, limits, attachments, self._transfer)

    async def GetSession(
        self, request: session_pb2.GetSessionRequest, context: Context
    ) -> session_pb2.GetSessionResponse:
        return await self._messages.GetSession(request, context)

    async def UpdateState(
        self, request: session_pb2.UpdateStateRequest, context: Context
    ) -> session_pb2.UpdateStateResponse:
        return await self._messages.UpdateState(request, context)

    async def AppendMessage(
        self, request: session_pb2.AppendMessageRequest, context: Context
    ) -> session_pb2.AppendMessageResponse:
        return await self._messages.AppendMessage(request, context)

    async def ListMessages(
        self, request: session_pb2.ListMessagesRequest, context: Context
    ) -> session_pb2.ListMessagesResponse:
        return await self._messages.ListMessages(request, context)

    async def SendPrompt(
        self, request: session_pb2.SendPromptRequest, context: Context
    ) -> session_pb2.SendPromptResponse:
        return await self._messages.SendPrompt(request, context)

    async def Subscribe(
        self, request: session_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[session_pb2.SubscribeResponse]:
        async with aclosing(self._dispatch.subscribe(request, context)) as replies:
            async for reply in replies:
                yield reply

    async def CancelAnswer(
        self, request: session_pb2.CancelAnswerRequest, context: Context
    ) -> session_pb2.CancelAnswerResponse:
        return await self._messages.CancelAnswer(request, context)

    async def GetUserUsage(
        self, request: session_pb2.GetUserUsageRequest, context: Context
    ) -> session_pb2.GetUserUsageResponse:
        return await self._threads.GetUserUsage(request, context)

    async def CreateRoom(
        self, request: access_pb2.CreateRoomRequest, context: Context
    ) -> access_pb2.CreateRoomResponse:
        return await self._rooms.CreateRoom(request, context)

    async def SetMember(
        self, request: access_pb2.SetMemberRequest, context: Context
    ) -> access_pb2.SetMemberResponse:
        return await self._rooms.SetMember(request, context)

    async def CreateInvite(
        self, request: access_pb2.CreateInviteRequest, context: Context
    ) -> access_pb2.CreateInviteResponse:
        return await self._rooms.CreateInvite(request, context)

    async def RevokeInvite(
        self, request: access_pb2.RevokeInviteRequest, context: Context
    ) -> access_pb2.RevokeInviteResponse:
        return await self._rooms.RevokeInvite(request, context)

    async def JoinRoom(
        self, request: access_pb2.JoinRoomRequest, context: Context
    ) -> access_pb2.JoinRoomResponse:
        return await self._rooms.JoinRoom(request, context)

    async def GetAccess(
        self, request: access_pb2.GetAccessRequest, context: Context
    ) -> access_pb2.GetAccessResponse:
        return await self._rooms.GetAccess(request, context)

    async def ListAudit(
        self, request: access_pb2.ListAuditRequest, context: Context
    ) -> access_pb2.ListAuditResponse:
        return await self._rooms.ListAudit(request, context)

    async def SetFeedback(
        self, request: session_pb2.SetFeedbackRequest, context: Context
    ) -> session_pb2.SetFeedbackResponse:
        return await self._feedback.SetFeedback(request, context)

    async def GetAttachment(
        self, request: attachments_pb2.GetAttachmentRequest, context: Context
    ) -> attachments_pb2.GetAttachmentResponse:
        return await self._attachments.GetAttachment(request, context)

    async def EditMessage(
        self, request: branches_pb2.EditMessageRequest, context: Context
    ) -> branches_pb2.EditMessageResponse:
        return await self._branches.EditMessage(request, context)

    async def RegenerateAnswer(
        self, request: branches_pb2.RegenerateAnswerRequest, context: Context
    ) -> branches_pb2.RegenerateAnswerResponse:
        return await self._branches.RegenerateAnswer(request, context)

    async def SelectBranch(
        self, request: branches_pb2.SelectBranchRequest, context: Context
    ) -> branches_pb2.SelectBranchResponse:
        return await self._branches.SelectBranch(request, context)

    async def ForkSession(
        self, request: branches_pb2.ForkSessionRequest, context: Context
    ) -> branches_pb2.ForkSessionResponse:
        return await self._branches.ForkSession(request, context)

    async def ExportSession(
        self, request: export_pb2.ExportSessionRequest, context: Context
    ) -> export_pb2.ExportSessionResponse:
        return await self._transfer.ExportSession(request, context)

    async def ImportSession(
        self, request: export_pb2.ImportSessionRequest, context: Context
    ) -> export_pb2.ImportSessionResponse:
        return await self._transfer.ImportSession(request, context)

    async def ListThreads(
        self, request: threads_pb2.ListThreadsRequest, context: Context
    ) -> threads_pb2.ListThreadsResponse:
        return await self._threads.ListThreads(request, context)

    async def SetThreadFlags(
        self, request: threads_pb2.SetThreadFlagsRequest, context: Context
    ) -> threads_pb2.SetThreadFlagsResponse:
        return await self._threads.SetThreadFlags(request, context)

    async def MarkRead(
        self, request: threads_pb2.MarkReadRequest, context: Context
    ) -> threads_pb2.MarkReadResponse:
        return await self._threads.MarkRead(request, context)

    async def RenameThread(
        self, request: threads_pb2.RenameThreadRequest, context: Context
    ) -> threads_pb2.RenameThreadResponse:
        return await self._threads.RenameThread(request, context)

    async def DeleteThread(
        self, request: threads_pb2.DeleteThreadRequest, context: Context
    ) -> threads_pb2.DeleteThreadResponse:
        return await self._threads.DeleteThread(request, context)

    async def RestoreThread(
        self, request: threads_pb2.RestoreThreadRequest, context: Context
    ) -> threads_pb2.RestoreThreadResponse:
        return await self._threads.RestoreThread(request, context)
