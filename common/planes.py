"""The cluster credential: a shared secret that pods, gateways and the AI service send each other
as gRPC metadata `dc-cluster-key`, and that no user ever holds.

Three kinds of caller, three credentials (docs/design.md, "Planes"): users (JWT), pods and
gateways (this key: forwarded calls, membership reads, calls to the AI service), operators (a
JWT with `"dc_admin": true`, common/auth.py). A user token never opens the other two planes.

Contract:
- Guaranteed: with `CLUSTER_SECRET_FILE` set, `carried_by` is true only for a call whose metadata
  holds exactly this key (compared in constant time); `refusing` turns any handler into one that
  answers UNAUTHENTICATED before the servicer runs, so a refused call does nothing.
- Required with `AUTH_MODE=jwt` (the default): `from_env` raises ConfigError naming
  CLUSTER_SECRET_FILE. With `AUTH_MODE=off` it is optional; unset, the cluster and admin planes
  are open (laptop mode): every caller counts as a pod, as every caller counts as a user.
- Bad input: an unreadable or short file fails at start-up; a missing, wrong or repeated-and-wrong
  key in a call is simply "not from the cluster".
- Crash / load: nothing is stored; the key is read once at start-up (rotate by restarting every
  process with the new file); one compare per call.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from common.config import ConfigError
from common.wire import CLUSTER_KEY

MIN_SECRET_CHARS = 32
HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Health checks stay open: load balancers and compose probe them without credentials."""

Metadata = Iterable[tuple[str, str | bytes]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


@dataclass(frozen=True)
class ClusterKey:
    """The key this process sends and accepts; immutable once read."""

    secret: bytes = b""
    """From CLUSTER_SECRET_FILE (`python -m deploy.make_secret FILE` makes one); b"": none, the
    cluster plane is open (only allowed with AUTH_MODE=off)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ClusterKey:
        path = environ.get("CLUSTER_SECRET_FILE", "")
        if not path:
            if environ.get("AUTH_MODE", "jwt") != "off":
                raise ConfigError(
                    "AUTH_MODE=jwt (the default) needs CLUSTER_SECRET_FILE: a file holding the "
                    "secret pods, gateways and the AI service share (make one with `python -m "
                    "deploy.make_secret FILE`); without it anyone could drain pods or pose as one"
                )
            return cls()
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"CLUSTER_SECRET_FILE: cannot read {path}: {exc.strerror}") from exc
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"CLUSTER_SECRET_FILE: {path} holds {len(secret)} characters; use at least "
                f"{MIN_SECRET_CHARS} random ones (`python -m deploy.make_secret FILE`)"
            )
        return cls(secret)

    @property
    def open(self) -> bool:
        """No key configured (AUTH_MODE=off laptop mode): every caller counts as a pod."""
        return not self.secret

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What an outgoing call to another pod, a gateway's pod or the AI service carries."""
        return ((CLUSTER_KEY, self.secret.decode()),) if self.secret else ()

    def sent_in(self, metadata: Metadata | None) -> bool:
        """Whether the call carries any `dc-cluster-key` at all (right or wrong)."""
        return any(k == CLUSTER_KEY for k, _ in metadata or ())

    def carried_by(self, metadata: Metadata | None) -> bool:
        """True when the call comes from the cluster: its first `dc-cluster-key` equals this key
        (constant time), or no key is configured (open)."""
        if not self.secret:
            return True
        sent = next((v for k, v in metadata or () if k == CLUSTER_KEY), None)
        if sent is None:
            return False
        value = sent.encode() if isinstance(sent, str) else sent
        return hmac.compare_digest(value, self.secret)


NOT_FROM_THE_CLUSTER = "this service takes calls from the cluster only (a valid dc-cluster-key)"


def refusing(handler: Handler, details: str) -> Handler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED at once, reading no
    request stream (so a streaming client is not left waiting)."""

    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    request_in = handler.request_deserializer
    reply_out = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, request_in, reply_out)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, request_in, reply_out)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, request_in, reply_out)
    return grpc.unary_unary_rpc_method_handler(deny, request_in, reply_out)


class ClusterOnly(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call without the cluster key, health checks aside: for
    services only pods call (the AI service). Open when no key is configured."""

    def __init__(self, key: ClusterKey) -> None:
        self._key = key

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        metadata = handler_call_details.invocation_metadata
        if handler is None or method.startswith(HEALTH_PREFIX) or self._key.carried_by(metadata):
            return handler
        return refusing(handler, NOT_FROM_THE_CLUSTER)
