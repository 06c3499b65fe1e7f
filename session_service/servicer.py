"""`durablechat.v1.SessionService`: validate → route → call the owner (here or forwarded) →
convert. Errors via `status_for`, with retry hints in trailing metadata."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import message as pb_message

from common.auth import AuthConfig, Verifier
from common.planes import ClusterKey
from common.revocation import Revocations
from common.wire import AUTHORIZATION, HOPS_KEY
from durablechat.v1 import session_pb2, session_pb2_grpc
from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.cluster.peers import Peers
from session_service.cluster.registry import Registry
from session_service.cluster.routing import Forward, Router
from session_service.errors import (
    Moving,
    NotFound,
    NotOwner,
    OutcomeUnknown,
    SessionClosed,
    SessionError,
)
from session_service.features.attachments.rpc import AttachmentRpcs
from session_service.features.branches.rpc import BranchRpcs
from session_service.features.feedback.rpc import FeedbackRpcs
from session_service.features.rooms.rpc import AccessRpcs
from session_service.features.threads.rpc import ThreadRpcs
from session_service.features.transfer.rpc import TransferRpcs
from session_service.limits import Limits
from session_service.rpc import convert
from session_service.rpc.handling import abort, checked, hop_count
from session_service.rpc.identify import identify
from session_service.rpc.messages import MessageRpcs
from session_service.rpc.quotas import Quotas
from session_service.rpc.stream_caps import StreamCaps
from session_service.store.attachments import AttachmentStore
from session_service.store.threads import ThreadStore
from session_service.store.usage import UsageStore

logger = logging.getLogger(__name__)


T = TypeVar("T")
EOF = grpc.aio.EOF
Context = grpc.aio.ServicerContext[Any, Any]
WRITE_METHODS = frozenset(
    {"UpdateState", "AppendMessage", "SendPrompt", "CancelAnswer", "RenameThread", "DeleteThread"}
    | {"RestoreThread", "SetFeedback", "ImportSession", "EditMessage", "RegenerateAnswer"}
    | {"SelectBranch"}
)
NEEDS_EXISTING = frozenset(
    {"GetSession", "ListMessages", "GetAccess", "ListAudit", "ExportSession", "GetAttachment"}
    | {"CancelAnswer", "JoinRoom", "RevokeInvite", "SetMember", "CreateInvite", "Subscribe"}
    | {"SetFeedback", "EditMessage", "RegenerateAnswer", "SelectBranch", "ForkSession"}
    | {"DeleteThread", "RestoreThread", "SetThreadFlags", "MarkRead", "RenameThread"}
)
"""Calls that cannot succeed on a session that never existed: with access control on they are
NOT_FOUND without activating it, so probing ids stores nothing (activation keeps an epoch)."""
PROMPTING = frozenset({"SendPrompt", "EditMessage", "RegenerateAnswer"})
"""Calls that start an answer: they reserve model tokens (quotas.py)."""
ROUTE_ATTEMPTS = 3
"""How often one call is routed again when the session's owner here closes under it."""
FORWARD_TIMEOUT_S = 30.0
"""Deadline of a forwarded unary call when the caller set none."""


class SessionServicer(
    MessageRpcs,
    AttachmentRpcs,
    AccessRpcs,
    ThreadRpcs,
    FeedbackRpcs,
    TransferRpcs,
    BranchRpcs,
    session_pb2_grpc.SessionServiceServicer,
):
    """Thin transport layer over this pod's owners and its peers."""

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
        self._registry = registry
        self._router = router
        self._peers = peers
        self._limits = limits
        self._usage = usage
        self._verifier = verifier or Verifier(AuthConfig())
        self._revocations = revocations or Revocations(None)
        self._threads = threads
        self._attachment_store = attachments
        self._streams = StreamCaps(limits.max_streams_per_user)
        """Subscribe streams served here, per user (counted where the owner serves them)."""
        self._cluster = cluster or ClusterKey()
        """Forwarded calls carry it; a caller's `dc-hops` counts only with it (a client cannot
        pose as a forwarding pod)."""

    @property
    def _quotas(self) -> Quotas:
        return self._registry.quotas

    async def _identify(self, context: Context) -> tuple[Caller, tuple[tuple[str, str], ...]]:
        """Checks the caller's token (common/auth.py) and that it was not revoked
        (common/revocation.py); returns the caller and the metadata that carries the token on
        to a peer when the call is forwarded. Raises Unauthenticated."""
        user, value = await identify(context, self._verifier, self._revocations)
        caller = Caller(user, enforced=self._verifier.required)
        return caller, ((AUTHORIZATION, value),) if value else ()

    async def _unary(
        self,
        method: str,
        request: pb_message.Message,
        context: Context,
        prepare: Callable[[Caller], Callable[[SessionActor], Awaitable[T]]],
    ) -> T:
        """Validates (`prepare` raises on bad input), then serves here or forwards."""
        reserved, user = 0, ""
        try:
            caller, auth = await self._identify(context)
            sid = checked(request)
            local = prepare(caller)
            hops = hop_count(context, self._cluster)
            counted, user = False, caller.user
            for _ in range(ROUTE_ATTEMPTS):
                target = self._router.target(sid)
                if target is None:
                    if not counted:  # where the call is served: a client's dc-hops cannot skip it
                        reserved = await self._count(caller, method)
                        counted = True
                    await self._unknown_is_not_found(caller, method, sid)
                    try:
                        result = await self._registry.call(sid, local)
                        if getattr(result, "duplicate", False) or not getattr(
                            result, "answer_seq", 1
                        ):  # no new answer: give it back
                            await self._registry.quotas.charge(user, -reserved)
                        return result
                    except NotOwner as exc:
                        target = self._router.forward_to(exc.owner_pod)
                    except SessionClosed:
                        continue  # passivated or handed off meanwhile: route again
                self._router.check_hops(hops, target)
                await self._registry.quotas.charge(user, -reserved)  # the owner counts it
                reserved = 0
                return cast(T, await self._forward(method, request, context, target, hops, auth))
            raise Moving("the session is moving between pods; retry")
        except Exception as exc:
            await self._registry.quotas.charge(user, -reserved)  # refused: nothing to answer
            await abort(context, exc)
            raise  # unreachable: abort raises

    async def _unknown_is_not_found(self, caller: Caller, method: str, sid: str) -> None:
        if caller.enforced and method in NEEDS_EXISTING and not await self._registry.known(sid):
            raise NotFound(access.NOT_FOUND)

    async def _count(self, caller: Caller, method: str) -> int:
        """Request rate and, for a prompt, a token reservation (quotas.py; returns it), counted
        where the call is served: the hop count is metadata any client can send."""
        await self._registry.quotas.check_request(caller.user)
        if method in PROMPTING:
            return await self._registry.quotas.reserve(caller.user)
        return 0

    async def _forward(
        self,
        method: str,
        request: Any,
        context: Context,
        target: Forward,
        hops: int,
        auth: tuple[tuple[str, str], ...],
    ) -> Any:
        remaining = context.time_remaining()
        call = getattr(self._peers.stub(target.address), method)(
            request,
            metadata=((HOPS_KEY, str(hops + 1)), *self._cluster.metadata(), *auth),
            timeout=remaining if remaining is not None else FORWARD_TIMEOUT_S,
        )
        return await self._unless_gone(call, target, write=method in WRITE_METHODS)

    async def _unless_gone(
        self, call: Awaitable[T], target: Forward, relay: bool = False, write: bool = False
    ) -> T:
        """Awaits a forwarded call, but gives up (retry-safe for idempotent clients) when the
        target leaves the member set meanwhile: a paused or partitioned pod must not hold calls
        until their deadline. A relayed stream also ends when this pod starts draining."""
        task = asyncio.ensure_future(call)
        gone = asyncio.ensure_future(self._router.until_gone(target.pod_id))
        waits: set[asyncio.Future[Any]] = {task, gone}
        if relay:
            waits.add(asyncio.ensure_future(self._router.draining.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits - {task}:
                waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        if write:
            raise OutcomeUnknown(
                f"pod {target.pod_id} left the cluster before answering; the write may or may "
                "not be stored (retry with the same client_message_id)"
            )
        if self._router.draining.is_set():
            raise Moving("this pod is draining; resubscribe")
        raise Moving(f"pod {target.pod_id} left the cluster while serving the call; retry")

    async def Subscribe(
        self, request: session_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[session_pb2.SubscribeResponse]:
        counted = streaming = False
        try:
            caller, auth = await self._identify(context)
            sid = checked(request)
            hops = hop_count(context, self._cluster)
            target = self._router.target(sid)
            if target is None:
                await self._count(caller, "Subscribe")
                await self._unknown_is_not_found(caller, "Subscribe", sid)
                counted = self._streams.acquire(caller.user if caller.enforced else "")
                try:
                    actor = await self._registry.get(sid)
                    subscriber, replay = actor.subscribe(
                        request.after_seq if request.HasField("after_seq") else None,
                        request.after_offset,
                        caller,
                    )
                except NotOwner as exc:
                    target = self._router.forward_to(exc.owner_pod)
                    if counted:  # the owner counts it
                        self._streams.release(caller.user)
                        counted = False
            if target is not None:
                self._router.check_hops(hops, target)
                call: Any = self._peers.stub(target.address).Subscribe(
                    request,
                    metadata=((HOPS_KEY, str(hops + 1)), *self._cluster.metadata(), *auth),
                )
                try:
                    while (
                        reply := await self._unless_gone(call.read(), target, relay=True)
                    ) is not EOF:
                        yield reply
                finally:
                    call.cancel()
                return
            streaming = True  # from here the stream's own `finally` releases the count
        except Exception as exc:
            await abort(context, exc)
            return
        finally:
            if counted and not streaming:  # refused, failed or cancelled before streaming
                self._streams.release(caller.user)
        epoch = actor.session.epoch
        try:
            for event in replay:
                yield convert.event(event, epoch, actor.session.tree.parent)
            while True:
                yield convert.event(await subscriber.next(), epoch, actor.session.tree.parent)
        except SessionError as exc:
            await abort(context, exc)
        finally:
            actor.unsubscribe(subscriber)
            if counted:
                self._streams.release(caller.user)
