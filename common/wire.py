"""Every gRPC metadata key the durable-chat services exchange, defined once.

Services import these names; no service spells a key itself (tests/unit/test_wire.py checks it).
Keys are lower case, as gRPC sends them. Those starting `dc-` are ours: request keys that only a
pod may send (`FROM_PODS_ONLY`) are stripped from clients' requests at the edge
(deploy/envoy/envoy.yaml, kept equal to this module by deploy/envoy_config.py and a unit test),
and the pods believe them only on a call carrying the cluster key anyway.
"""

from __future__ import annotations

# Request metadata

AUTHORIZATION = "authorization"
"""The caller's `Bearer <token>`: sent by the gateway, the admin CLI and gRPC clients; a pod that
forwards a call passes it on, so the owner identifies the same caller."""

COOKIE_HEADER = "cookie"
"""The browser's cookie header through Envoy (gRPC-web): the `dc_token` cookie stands in for
AUTHORIZATION when that is absent (common/auth.py `from_cookie`)."""

CLUSTER_KEY = "dc-cluster-key"
"""The cluster secret (common/planes.py): sent by pods, the gateway (ListMembers) and operators
(admin CLI) on calls that only the cluster may make; never a user's, stripped by Envoy."""

HOPS_KEY = "dc-hops"
"""How often a call was forwarded already (decimal, at most 3 digits): set by the forwarding pod,
believed only with CLUSTER_KEY (session_service/rpc/handling.py), stripped by Envoy."""

FROM_PODS_ONLY = (CLUSTER_KEY, HOPS_KEY)
"""Request keys a client never sends: Envoy's `request_headers_to_remove`, in this order."""

# Trailing metadata of an error

RETRY_SAFE_KEY = "dc-retry-safe"
"""`1` on an error raised before anything was written: the client may retry any call, even a
write that is not idempotent (session_service/errors.py sets it, gateway/upstream.py reads it)."""

RETRY_AFTER_KEY = "dc-retry-after-ms"
"""On RESOURCE_EXHAUSTED from a rate limit: milliseconds to wait before the next try (decimal);
the gateway turns it into HTTP 429 `Retry-After`."""

OWNER_KEY = "dc-owner"
"""On a retry-safe UNAVAILABLE from a pod that is not the session's owner: the owner's address
(host:port) when known, for a client that can call it directly."""
