"""Session-service errors, each naming its gRPC status; `status_for` maps any exception."""

from __future__ import annotations

import grpc


class SessionError(Exception):
    """Base class. INTERNAL unless a subclass says otherwise."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(SessionError):
    """Bad input: INVALID_ARGUMENT. Retrying the same request cannot succeed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Conflict(SessionError):
    """Expected version does not match: ABORTED. Re-read, then retry."""

    code = grpc.StatusCode.ABORTED


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


class TooBusy(SessionError):
    """A bounded queue is full: RESOURCE_EXHAUSTED. Retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class SlowSubscriber(SessionError):
    """A subscriber fell too far behind: RESOURCE_EXHAUSTED. Resubscribe from your cursor."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class AnswerFailed(SessionError):
    """The AI service failed an answer; stored as a FAILED answer, never raised to clients."""

    code = grpc.StatusCode.UNAVAILABLE


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and details for an exception; unknown ones are INTERNAL."""
    if isinstance(exc, SessionError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
