"""A whole system with AUTH_MODE=jwt (two pods, so calls get forwarded; AI; gateway; the
builder's StackSpec(auth=True, pods=PODS)) and the users the security tests act as. One per
test module: tests use their own session ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from common.auth import mint
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started
from durablechat.v1 import (
    access_pb2,
    attachments_pb2,
    branches_pb2,
    common_pb2,
    export_pb2,
    session_pb2,
    session_pb2_grpc,
    threads_pb2,
)

PODS = ["pod-a", "pod-b"]


class SecureStack:
    def __init__(self, stack: Stack, secret: bytes, secret_file: Path) -> None:
        self.stack = stack
        self.secret = secret
        self.secret_file = secret_file

    def token(self, user: str, ttl_s: int = 600) -> str:
        return mint(self.secret, user, ttl_s)

    def admin_token(self, user: str = "ops", ttl_s: int = 600) -> str:
        """An operator's token (`durablechat token --admin`): ClusterService."""
        return mint(self.secret, user, ttl_s, admin=True)

    def user(self, name: str, pod: str = "pod-a") -> User:
        return User(name, self.token(name), self.stack.pod_addrs[pod])


@contextmanager
def secure_stack(
    workdir: Path,
    pod_env: dict[str, str] | None = None,
    search: bool = False,
    gateway_env: dict[str, str] | None = None,
    search_env: dict[str, str] | None = None,
    model_url: str = "",
) -> Iterator[SecureStack]:
    """With `search`, the search indexer runs too (with `search_env`) and the gateway serves
    /api/search. With `model_url`, the AI service uses that model instead of the dev model."""
    spec = StackSpec(
        pods=tuple(PODS),
        wait_members=True,
        auth=True,
        model_url=model_url,
        token_delay_ms=1,
        search=search,
        rate_limits_in_redis=True,
        pod_env=pod_env or {},
        search_env=search_env or {},
        gateway_env=gateway_env or {},
    )
    with started(workdir, spec) as stack:
        assert stack.auth_secret_file is not None
        secret_file = stack.auth_secret_file
        yield SecureStack(stack, secret_file.read_bytes().strip(), secret_file)


def room_id() -> str:
    return f"r-{uuid.uuid4().hex}"


class User:
    """One user's gRPC calls (their token on every call), on one pod."""

    def __init__(self, name: str, token: str, address: str) -> None:
        self.name = name
        self.token = token
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        await self.channel.close()

    async def call(self, method: str, request: Any) -> Any:
        return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=15)

    async def post(self, sid: str, text: str) -> Any:
        request = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content=text
        )
        return await self.call("AppendMessage", request)

    async def create_room(self, sid: str = "") -> Any:
        return await self.call("CreateRoom", access_pb2.CreateRoomRequest(session_id=sid))

    async def invite(self, sid: str, role: access_pb2.AccessRole.ValueType, ttl_s: int = 0) -> Any:
        request = access_pb2.CreateInviteRequest(session_id=sid, role=role, ttl_seconds=ttl_s)
        return await self.call("CreateInvite", request)

    async def join(self, sid: str, code: str) -> Any:
        return await self.call("JoinRoom", access_pb2.JoinRoomRequest(session_id=sid, code=code))

    async def set_member(self, sid: str, user: str, role: access_pb2.AccessRole.ValueType) -> Any:
        request = access_pb2.SetMemberRequest(session_id=sid, user=user, role=role)
        return await self.call("SetMember", request)

    async def threads(self, archived: bool = False, limit: int = 0, token: str = "") -> Any:
        request = threads_pb2.ListThreadsRequest(archived=archived, limit=limit, page_token=token)
        return await self.call("ListThreads", request)

    def subscribe(self, sid: str, after_seq: int = 0) -> Any:
        request = session_pb2.SubscribeRequest(session_id=sid, after_seq=after_seq)
        return self.stub.Subscribe(request, metadata=self.metadata)


def every_request(sid: str) -> dict[str, Any]:
    """One request of every SessionService RPC about session `sid` (Subscribe aside)."""
    return {
        "GetSession": session_pb2.GetSessionRequest(session_id=sid),
        "UpdateState": session_pb2.UpdateStateRequest(session_id=sid, patch_json='{"x":1}'),
        "AppendMessage": session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="intruder"
        ),
        "ListMessages": session_pb2.ListMessagesRequest(session_id=sid),
        "SendPrompt": session_pb2.SendPromptRequest(session_id=sid, content="intruder"),
        "CancelAnswer": session_pb2.CancelAnswerRequest(session_id=sid),
        "CreateRoom": access_pb2.CreateRoomRequest(session_id=sid),
        "SetMember": access_pb2.SetMemberRequest(
            session_id=sid, user="mallory", role=access_pb2.ACCESS_ROLE_MEMBER
        ),
        "CreateInvite": access_pb2.CreateInviteRequest(
            session_id=sid, role=access_pb2.ACCESS_ROLE_MEMBER
        ),
        "RevokeInvite": access_pb2.RevokeInviteRequest(session_id=sid, invite_id="0" * 16),
        "JoinRoom": access_pb2.JoinRoomRequest(session_id=sid, code="guess"),
        "GetAccess": access_pb2.GetAccessRequest(session_id=sid),
        "ListAudit": access_pb2.ListAuditRequest(session_id=sid),
        "SetThreadFlags": threads_pb2.SetThreadFlagsRequest(session_id=sid, pinned=True),
        "MarkRead": threads_pb2.MarkReadRequest(session_id=sid),
        "RenameThread": threads_pb2.RenameThreadRequest(session_id=sid, title="mine now"),
        "DeleteThread": threads_pb2.DeleteThreadRequest(session_id=sid),
        "RestoreThread": threads_pb2.RestoreThreadRequest(session_id=sid),
        "ExportSession": export_pb2.ExportSessionRequest(session_id=sid),
        "GetAttachment": attachments_pb2.GetAttachmentRequest(session_id=sid, sha256="0" * 64),
        "EditMessage": branches_pb2.EditMessageRequest(session_id=sid, message_seq=2, content="x"),
        "RegenerateAnswer": branches_pb2.RegenerateAnswerRequest(session_id=sid, message_seq=2),
        "SelectBranch": branches_pb2.SelectBranchRequest(session_id=sid, message_seq=2),
        "ForkSession": branches_pb2.ForkSessionRequest(session_id=sid, at_seq=2),
        "ImportSession": export_pb2.ImportSessionRequest(
            session_id=sid, jsonl='{"format":"durablechat.session","version":1}'
        ),
        "SetFeedback": session_pb2.SetFeedbackRequest(
            session_id=sid, message_seq=2, rating=common_pb2.RATING_UP
        ),
    }


async def status_of(user: User, method: str, request: object) -> grpc.StatusCode:
    """The status `user` gets for one call (OK when it succeeded)."""
    try:
        await user.call(method, request)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
