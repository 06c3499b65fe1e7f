"""Session-service errors, each naming its gRPC status; `status_for` maps any exception."""

from __future__ import annotations

import grpc

from common.wire import OWNER_KEY, RETRY_AFTER_KEY, RETRY_SAFE_KEY


class SessionError(Exception):
    """Base class. INTERNAL unless a subclass says otherwise.

    `retry_safe` errors happen before anything is written: the same request may be sent again
    (the gateway does so by itself). They carry `dc-retry-safe: 1` in trailing metadata.
    """

    code = grpc.StatusCode.INTERNAL
    retry_safe = False


class InvalidArgument(SessionError):
    """Bad input: INVALID_ARGUMENT. Retrying the same request cannot succeed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Conflict(SessionError):
    """Expected version does not match: ABORTED. Re-read, then retry."""

    code = grpc.StatusCode.ABORTED


class FailedPrecondition(SessionError):
    """The request does not fit the current state (restoring a live thread, listing threads
    without users): FAILED_PRECONDITION."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Fenced(SessionError):
    """A newer owner epoch exists: FAILED_PRECONDITION. This owner must drop the session."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class StoreUnavailable(SessionError):
    """Redis did not answer in time: UNAVAILABLE. A retry may succeed; a write's outcome is
    unknown unless it carried a client message id."""

    code = grpc.StatusCode.UNAVAILABLE


class SessionClosed(SessionError):
    """The in-memory owner was passivated or invalidated while a call waited: UNAVAILABLE.
    Internal callers retry on a fresh activation."""

    code = grpc.StatusCode.UNAVAILABLE
    retry_safe = True


class Unauthenticated(SessionError):
    """The call carries no acceptable token (AUTH_MODE=jwt)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class NotFound(SessionError):
    """The session does not exist or the caller may not know it does: NOT_FOUND."""

    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(SessionError):
    """The caller has a role in the session that does not allow this: PERMISSION_DENIED."""

    code = grpc.StatusCode.PERMISSION_DENIED


class RateLimited(SessionError):
    """A rate limit or token budget is used up: RESOURCE_EXHAUSTED, with the wait in trailing
    metadata `dc-retry-after-ms`. Nothing was done."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class LimitReached(SessionError):
    """A user's storage footprint is at a limit (footprint.py): RESOURCE_EXHAUSTED, the message
    naming the setting. Nothing was stored; the same request fails until the usage goes down
    or the operator raises the setting."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StoreFull(SessionError):
    """Redis refused a write at its `maxmemory` (noeviction): RESOURCE_EXHAUSTED. Nothing was
    stored; reads go on. A retry succeeds once the operator made room."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotOwner(SessionError):
    """Another pod owns the session and the call may not be forwarded again: UNAVAILABLE,
    retry-safe, with the owner's address in trailing metadata `dc-owner` when known."""

    code = grpc.StatusCode.UNAVAILABLE
    retry_safe = True

    def __init__(self, message: str, owner_pod: str = "", owner_address: str = "") -> None:
        super().__init__(message)
        self.owner_pod = owner_pod
        self.owner_address = owner_address


class Moving(SessionError):
    """The session is being handed to another pod (join, drain) or taken over after a crash:
    UNAVAILABLE, retry-safe; a retry reaches the new owner."""

    code = grpc.StatusCode.UNAVAILABLE
    retry_safe = True


class OutcomeUnknown(SessionError):
    """A forwarded write was abandoned because its owner pod left the cluster: UNAVAILABLE,
    NOT retry-safe (the owner may have stored it). Retry only with a client message id."""

    code = grpc.StatusCode.UNAVAILABLE


class TooBusy(SessionError):
    """A bounded queue is full: RESOURCE_EXHAUSTED. Retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class SlowSubscriber(SessionError):
    """A subscriber fell too far behind: RESOURCE_EXHAUSTED. Resubscribe from your cursor."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class AnswerFailed(SessionError):
    """The AI service failed an answer; retried by the owner when `retryable`, else stored as a
    FAILED answer. Never raised to clients."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and details for an exception; unknown ones are INTERNAL."""
    if isinstance(exc, SessionError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"


def trailers_for(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """Trailing metadata telling clients whether and where to retry."""
    out: list[tuple[str, str]] = []
    if isinstance(exc, SessionError) and exc.retry_safe:
        out.append((RETRY_SAFE_KEY, "1"))
    if isinstance(exc, NotOwner) and exc.owner_address:
        out.append((OWNER_KEY, exc.owner_address))
    if isinstance(exc, RateLimited):
        out.append((RETRY_AFTER_KEY, str(exc.retry_after_ms)))
    return tuple(out)
