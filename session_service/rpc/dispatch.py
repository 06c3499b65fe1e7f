"""Routes a SessionService call to its session's owner: serves it here or forwards it to a peer.

Contract (the order is the security contract, tests/security/):
- `identify` first: the caller's token (common/auth.py), not revoked (common/revocation.py).
- A call is counted (request rate; a prompt's token reservation, quotas.py) by the pod that
  serves it, never by one that forwards it: the hop count is metadata any client can send.
- With access control on, a method that `needs_existing` (methods.py) is NOT_FOUND on a session
  that was never used, before anything activates it, so probing ids stores nothing.
- A call whose owner here closes under it is routed again, at most ROUTE_ATTEMPTS times; a call
  is forwarded at most MAX_HOPS times (cluster/routing.py).
- Failover waits here, not in the client's backoff (docs/failover.md): a call that meets its
  session being handed off waits (up to the hand-off timeout) until the move is done, then goes
  to the new owner; a forward whose target is down (its connection refused or cut, no answer of
  ours) waits up to DOWN_WAIT_S for the member set to drop that pod, or for the channel to it to
  connect again (a pod that just restarted), then is routed again, for a read or an idempotent
  write (one with a client message id) only, and before any reply of a stream was relayed.
- A forwarded call gives up when its target leaves the member set: retry-safe Moving, or
  OutcomeUnknown for a write (its outcome is not known). A relayed stream also ends when this
  pod starts draining.
- Every failure becomes its gRPC status with retry hints (handling.py `abort`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import message as pb_message

from common.auth import Verifier
from common.planes import ClusterKey
from common.revocation import Revocations
from durablechat.v1 import session_pb2
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
from session_service.rpc import convert
from session_service.rpc.handling import abort, checked, forwarded, hop_count
from session_service.rpc.identify import carried_on, identify
from session_service.rpc.methods import SUBSCRIBE, Routed, Rpc
from session_service.rpc.stream_caps import StreamCaps
from session_service.store.quotas import Quotas

if TYPE_CHECKING:  # the generated async stub exists only in the .pyi
    from durablechat.v1.session_pb2_grpc import SessionServiceAsyncStub

T = TypeVar("T")
Req = TypeVar("Req", bound=pb_message.Message)
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]
Local = Callable[[SessionActor], Awaitable[T]]
"""What a routed call does with the owner actor, when this pod holds it."""
Auth = tuple[tuple[str, str], ...]
"""Metadata that carries the caller's token on to a peer."""

EOF = grpc.aio.EOF
ROUTE_ATTEMPTS = 3
"""How often one call is routed again when the session's owner here closes under it."""
FORWARD_TIMEOUT_S = 30.0
"""Deadline of a forwarded unary call when the caller set none."""
DOWN_WAIT_S = 1.0
"""How long a call whose target pod is down waits for the member set to drop that pod (a dead
pod's Redis connection closes with it: one membership poll, 50 ms by default)."""


class TargetLeft(Moving):
    """A forwarded call's target left the member set before answering (retry-safe)."""


def _pod_down(exc: BaseException) -> bool:
    """A forward that failed without any answer of a pod's: its target is down or unreachable."""
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        and not exc.trailing_metadata()
    )


def _served(rpc: Rpc, local: Local[T], caller: Caller) -> Local[T]:
    """`local`, after making a windowed image whole unless `rpc` reads only recent events.
    Only for a caller who may read the session: every such method needs that at least (an
    import needs none, but only into an empty session, which is whole), so nobody else can
    make the owner read a long log."""
    if rpc.recent:
        return local

    async def whole_first(actor: SessionActor) -> T:
        if not actor.session.whole:
            actor.read(caller)
            await actor.whole()
        return await local(actor)

    return whole_first


class Dispatcher:
    """Shared by SessionServicer and the feature RPC classes (features/*/rpc.py); holds no
    state of its own but the Subscribe streams counted here (StreamCaps)."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        peers: Peers,
        verifier: Verifier,
        revocations: Revocations,
        cluster: ClusterKey,
        streams: StreamCaps,
    ) -> None:
        self._registry = registry
        self._router = router
        self._peers = peers
        self._verifier = verifier
        self._revocations = revocations
        self._cluster = cluster
        """Forwarded calls carry it; a caller's `dc-hops` counts only with it (a client cannot
        pose as a forwarding pod)."""
        self._streams = streams
        """Subscribe streams served here, per user (counted where the owner serves them)."""

    @property
    def quotas(self) -> Quotas:
        return self._registry.quotas

    async def identify(self, context: Context) -> tuple[Caller, Auth]:
        """Checks the caller's token and that it was not revoked; returns the caller and the
        metadata that carries the token on to a peer when the call is forwarded. Raises
        Unauthenticated."""
        user, value = await identify(context, self._verifier, self._revocations)
        caller = Caller(user, enforced=self._verifier.required)
        return caller, carried_on(value)

    async def unary(
        self,
        rpc: Routed[Req, Resp],
        request: Req,
        context: Context,
        prepare: Callable[[Caller], Local[Resp]],
    ) -> Resp:
        """Validates (`prepare` raises on bad input), then serves here or forwards."""
        reserved, user = 0, ""
        try:
            caller, auth = await self.identify(context)
            sid = checked(request)
            local = prepare(caller)
            hops = hop_count(context, self._cluster)
            counted, user = False, caller.user
            for _ in range(ROUTE_ATTEMPTS):
                target = self._router.target(sid)
                if target is None:
                    if not counted:  # where the call is served: a client's dc-hops cannot skip it
                        reserved = await self._count(caller, rpc)
                        counted = True
                    await self._refuse_unknown(caller, rpc, sid)
                    try:
                        result = await self._registry.call(sid, _served(rpc, local, caller))
                        if rpc.answered is not None and not rpc.answered(result):
                            await self.quotas.charge(user, -reserved)  # no new answer: give it back
                        return result
                    except NotOwner as exc:
                        target = self._router.forward_to(exc.owner_pod)
                    except SessionClosed:
                        continue  # passivated or handed off meanwhile: route again
                    except Moving:
                        if not await self._registry.until_moved(sid):
                            raise
                        continue  # handed off: the new owner serves it
                self._router.check_hops(hops, target)
                await self.quotas.charge(user, -reserved)  # the owner counts it
                reserved = 0
                try:
                    return await self._forward(rpc, request, context, target, hops, auth)
                except TargetLeft:
                    continue  # a read: route again (a write raised OutcomeUnknown)
                except grpc.aio.AioRpcError as exc:
                    retry_safe = not rpc.write or bool(getattr(request, "client_message_id", ""))
                    if not (_pod_down(exc) and retry_safe and await self._dropped(target)):
                        raise
            raise Moving("the session is moving between pods; retry")
        except Exception as exc:
            await self.quotas.charge(user, -reserved)  # refused: nothing to answer
            await abort(context, exc)
            raise  # unreachable: abort raises

    async def _dropped(self, target: Forward) -> bool:
        """Waits up to DOWN_WAIT_S for the member set to drop `target` or for our channel to it
        to connect again; True if either happened."""
        waits = {
            asyncio.ensure_future(self._router.until_gone(target.pod_id)),
            asyncio.ensure_future(self._peers.ready(target.address)),
        }
        done, pending = await asyncio.wait(
            waits, timeout=DOWN_WAIT_S, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        return bool(done)

    async def _refuse_unknown(self, caller: Caller, rpc: Rpc, sid: str) -> None:
        if caller.enforced and rpc.needs_existing and not await self._registry.known(sid):
            raise NotFound(access.NOT_FOUND)

    async def _count(self, caller: Caller, rpc: Rpc) -> int:
        """Request rate and, for a prompt, a token reservation (returned)."""
        await self.quotas.check_request(caller.user)
        if rpc.prompts:
            return await self.quotas.reserve(caller.user)
        return 0

    def _peer(self, target: Forward) -> SessionServiceAsyncStub:
        # Peers' channels are grpc.aio channels: their stubs' calls are awaitable.
        return cast("SessionServiceAsyncStub", self._peers.stub(target.address))

    async def _forward(
        self,
        rpc: Routed[Req, Resp],
        request: Req,
        context: Context,
        target: Forward,
        hops: int,
        auth: Auth,
    ) -> Resp:
        remaining = context.time_remaining()
        call = rpc.peer(self._peer(target))(
            request,
            metadata=forwarded(hops, self._cluster, auth),
            timeout=remaining if remaining is not None else FORWARD_TIMEOUT_S,
        )
        return await self._unless_gone(call, target, write=rpc.write)

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
        raise TargetLeft(f"pod {target.pod_id} left the cluster while serving the call; retry")

    async def subscribe(
        self, request: session_pb2.SubscribeRequest, context: Context
    ) -> AsyncGenerator[session_pb2.SubscribeResponse, None]:
        """Subscribe: the owner's events served here, or relayed from the owner pod."""
        counted = streaming = False
        try:
            caller, auth = await self.identify(context)
            sid = checked(request)
            hops = hop_count(context, self._cluster)
            rated = False
            for _ in range(ROUTE_ATTEMPTS):
                target = self._router.target(sid)
                if target is None:
                    if not rated:
                        await self._count(caller, SUBSCRIBE)
                        rated = True
                    await self._refuse_unknown(caller, SUBSCRIBE, sid)
                    counted = self._streams.acquire(caller.user if caller.enforced else "")
                    try:
                        actor = await self._registry.get(sid)
                        after_seq = request.after_seq if request.HasField("after_seq") else None
                        actor.read(caller)  # before reading older events for the caller
                        older = await actor.events_before_window(after_seq)
                        subscriber, replay = actor.subscribe(
                            after_seq, request.after_offset, caller, older
                        )
                    except NotOwner as exc:
                        target = self._router.forward_to(exc.owner_pod)
                        if counted:  # the owner counts it
                            self._streams.release(caller.user)
                            counted = False
                if target is None:
                    break
                self._router.check_hops(hops, target)
                call = self._peer(target).Subscribe(
                    request, metadata=forwarded(hops, self._cluster, auth)
                )
                relayed = False
                try:
                    while (
                        reply := await self._unless_gone(call.read(), target, relay=True)
                    ) is not EOF:
                        relayed = True
                        yield cast(session_pb2.SubscribeResponse, reply)
                except TargetLeft:
                    if relayed:
                        raise
                    continue  # it left before relaying anything: route again
                except grpc.aio.AioRpcError as exc:
                    if relayed or not _pod_down(exc) or not await self._dropped(target):
                        raise
                    continue  # its pod died before relaying anything: route again
                finally:
                    call.cancel()
                return
            else:
                raise Moving("the session is moving between pods; resubscribe")
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
