"""Who may call `ClusterService` (Drain, HandOff, GetPodStatus, ListMembers): an operator (a
token with `"dc_admin": true`, verified and not revoked) or the cluster (the `dc-cluster-key`,
common/planes.py). Decided before the servicer does anything.

Contract:
- Guaranteed: no credential (or a wrong cluster key, or a bad, expired or revoked token) ->
  UNAUTHENTICATED; a valid user token without the admin claim -> PERMISSION_DENIED. Nothing is
  read, changed or listed for a refused call.
- Open only in laptop mode (AUTH_MODE=off with no CLUSTER_SECRET_FILE): then every caller
  counts as the cluster, as every caller counts as a user.
- Load: one constant-time compare, or one token check and one (cached) revocation read.
"""

from __future__ import annotations

from typing import Any

import grpc

from common.auth import Verifier, is_admin
from common.planes import ClusterKey
from common.revocation import Revocations
from session_service.errors import PermissionDenied, Unauthenticated
from session_service.rpc.identify import identify

NEEDS = (
    "ClusterService needs an admin token (`durablechat token --admin`, sent as "
    "`authorization: Bearer <token>`) or the cluster key"
)


class Operators:
    """Admits operators and pods; owns nothing and stores nothing."""

    def __init__(self, cluster: ClusterKey, verifier: Verifier, revocations: Revocations) -> None:
        self._cluster = cluster
        self._verifier = verifier
        self._revocations = revocations

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Who is calling ("cluster" or the admin's user); raises Unauthenticated or
        PermissionDenied."""
        metadata = context.invocation_metadata() or ()
        if self._cluster.carried_by(metadata):
            return "cluster"
        if self._cluster.sent_in(metadata):
            raise Unauthenticated("the cluster key is wrong")
        try:
            user, value = await identify(context, self._verifier, self._revocations)
        except Unauthenticated as exc:
            raise Unauthenticated(f"{NEEDS}: {exc}") from exc
        if not user:
            raise Unauthenticated(NEEDS)
        if not is_admin(value):
            raise PermissionDenied(f"{NEEDS}; this token is a user's, not an operator's")
        return user
