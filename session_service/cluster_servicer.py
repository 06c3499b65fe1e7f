"""`durablechat.v1.ClusterService`: the member set this pod sees, so gateways route by the ring."""

from __future__ import annotations

from typing import Any

import grpc

from durablechat.v1 import cluster_pb2, cluster_pb2_grpc
from session_service.membership import Membership


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, membership: Membership) -> None:
        self._membership = membership

    async def ListMembers(
        self,
        request: cluster_pb2.ListMembersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cluster_pb2.ListMembersResponse:
        members = self._membership.members
        return cluster_pb2.ListMembersResponse(
            members=[cluster_pb2.Member(pod_id=p, address=a) for p, a in sorted(members.items())],
            vnodes=self._membership.ring.vnodes,
            pod_id=self._membership.pod_id,
        )
