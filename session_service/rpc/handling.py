"""What every SessionService handler does around its call: refuse requests that did not decode
or carry unknown fields, read the hop count, and turn any failure into its gRPC status with
retry hints in trailing metadata (a forwarded call's own status is passed on)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields

from common.planes import ClusterKey
from common.wire import HOPS_KEY
from session_service.errors import InvalidArgument, Moving, status_for, trailers_for
from session_service.log import validate
from session_service.rpc.undecodable import Undecodable

logger = logging.getLogger("session_service.servicer")

Context = grpc.aio.ServicerContext[Any, Any]


def decoded(request: object) -> None:
    """Refuses a request whose bytes did not decode (session_service/rpc/undecodable.py)."""
    if isinstance(request, Undecodable):
        raise InvalidArgument(f"the request is not a valid protobuf message: {request.why}")


def known(request: pb_message.Message) -> None:
    """Refuses undecodable requests and fields this server does not know."""
    decoded(request)
    if len(unknown_fields.UnknownFieldSet(request)):
        raise InvalidArgument("request has unknown fields; is the client newer than the server?")


def checked(request: pb_message.Message) -> str:
    """As `known`; returns the validated session id."""
    known(request)
    return validate.session_id(request.session_id)  # type: ignore[attr-defined]


def hop_count(context: Context, cluster: ClusterKey) -> int:
    """How often the call was forwarded already: `dc-hops`, believed only from a pod (a call
    carrying the cluster key); a client's own is ignored (0)."""
    metadata = context.invocation_metadata() or ()
    if not cluster.carried_by(metadata):
        return 0
    for key, value in metadata:
        if key == HOPS_KEY:
            value = str(value)
            return int(value) if value.isdigit() and len(value) <= 3 else 0
    return 0


def forwarded(
    hops: int, cluster: ClusterKey, auth: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """The metadata of a call forwarded to a peer: one more hop, the cluster key (so the peer
    believes the hop count) and the caller's token (`auth`)."""
    return ((HOPS_KEY, str(hops + 1)), *cluster.metadata(), *auth)


async def abort(context: Context, exc: BaseException) -> None:
    if isinstance(exc, grpc.aio.AioRpcError) and never_reached(exc):
        logger.debug("forward never reached its pod: %s", exc.details())
        exc = Moving("the session's owner pod is unreachable; it is being taken over, retry")
    if isinstance(exc, grpc.aio.AioRpcError):  # a forwarded call's answer: pass it on
        code = exc.code()
        if code == grpc.StatusCode.CANCELLED:  # the peer stopped mid-call, not our caller
            code = grpc.StatusCode.UNAVAILABLE
        context.set_trailing_metadata(exc.trailing_metadata() or ())
        await context.abort(code, exc.details() or "")
    code, details = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        logger.error("internal error", exc_info=exc)
    context.set_trailing_metadata(trailers_for(exc))
    await context.abort(code, details)


def never_reached(exc: grpc.aio.AioRpcError) -> bool:
    """A forward that failed to connect: the owner never saw it, so a retry is safe."""
    return (
        exc.code() == grpc.StatusCode.UNAVAILABLE
        and not exc.trailing_metadata()
        and "failed to connect" in (exc.details() or "").lower()
    )
