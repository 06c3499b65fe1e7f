"""`durablechat.v1.ClusterService`: the member set this pod sees (gateways route by the ring), and
the admin calls: what this pod holds, and drain it. Every call needs an operator's admin token or
the cluster key (operators.py), checked before anything is done; Envoy does not route it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from durablechat.v1 import cluster_pb2, cluster_pb2_grpc
from session_service.cluster.membership import Membership
from session_service.cluster.registry import Registry
from session_service.errors import InvalidArgument
from session_service.log import validate
from session_service.rpc.handling import abort
from session_service.rpc.operators import Operators
from session_service.rpc.undecodable import Undecodable

MAX_LISTED_SESSIONS = 1000


async def _decoded(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """INVALID_ARGUMENT for a request whose bytes did not decode (rpc/undecodable.py)."""
    if isinstance(request, Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid protobuf message: {request.why}",
        )


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        membership: Membership,
        registry: Registry,
        draining: Callable[[], bool],
        drain: Callable[[], Awaitable[None]],
        operators: Operators,
    ) -> None:
        self._operators = operators
        self._membership = membership
        self._registry = registry
        self._draining = draining
        self._drain = drain
        self._drain_task: asyncio.Task[None] | None = None

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Refuses (UNAUTHENTICATED / PERMISSION_DENIED) callers that are neither an operator
        nor a pod; returns for the others."""
        try:
            await self._operators.admit(context)
        except Exception as exc:
            await abort(context, exc)

    async def GetPodStatus(
        self,
        request: cluster_pb2.GetPodStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cluster_pb2.GetPodStatusResponse:
        await self._admit(context)
        await _decoded(request, context)
        if request.session_id:
            try:
                validate.session_id(request.session_id)
            except InvalidArgument as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        actors = [a for a in self._registry.actors() if not a.closed]
        ids = sorted(a.session.session_id for a in actors)
        held = self._registry.local(request.session_id) if request.session_id else None
        return cluster_pb2.GetPodStatusResponse(
            session_epoch=held.session.epoch if held is not None else 0,
            session_subscribers=len(held.session.subscribers) if held is not None else 0,
            pod_id=self._membership.pod_id,
            active_sessions=len(actors),
            subscribers=sum(len(a.session.subscribers) for a in actors),
            draining=self._draining(),
            session_ids=ids[:MAX_LISTED_SESSIONS],
        )

    async def HandOff(
        self, request: cluster_pb2.HandOffRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cluster_pb2.HandOffResponse:
        await self._admit(context)
        await _decoded(request, context)
        try:
            validate.session_id(request.session_id)
        except InvalidArgument as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        actor = self._registry.local(request.session_id)
        if actor is not None and not actor.moving:
            # Shielded: a caller giving up must not leave the session refusing writes.
            await asyncio.shield(self._registry.hand_off(actor))
        return cluster_pb2.HandOffResponse(pod_id=self._membership.pod_id, held=actor is not None)

    async def Drain(
        self, request: cluster_pb2.DrainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cluster_pb2.DrainResponse:
        await self._admit(context)
        await _decoded(request, context)
        if self._drain_task is None:  # one drain, however many callers; it outlives them
            self._drain_task = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drain_task)
        remaining = sum(1 for a in self._registry.actors() if not a.closed)
        return cluster_pb2.DrainResponse(
            pod_id=self._membership.pod_id, remaining_sessions=remaining
        )

    async def ListMembers(
        self,
        request: cluster_pb2.ListMembersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cluster_pb2.ListMembersResponse:
        await self._admit(context)
        await _decoded(request, context)
        members = self._membership.members
        return cluster_pb2.ListMembersResponse(
            members=[cluster_pb2.Member(pod_id=p, address=a) for p, a in sorted(members.items())],
            vnodes=self._membership.ring.vnodes,
            pod_id=self._membership.pod_id,
        )
