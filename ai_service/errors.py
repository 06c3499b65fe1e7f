"""AI-service errors, each naming its gRPC status and whether a retry can succeed; `status_for`
maps any exception (unknown ones to INTERNAL)."""

from __future__ import annotations

import grpc


class AiError(Exception):
    """Base class. INTERNAL unless a subclass says otherwise."""

    code = grpc.StatusCode.INTERNAL
    retryable = False


class InvalidRequest(AiError):
    """The Generate request itself is malformed: INVALID_ARGUMENT. Retrying it cannot succeed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelRejectedRequest(AiError):
    """The model answered HTTP 400 (bad parameters, context too long): INVALID_ARGUMENT.
    Retrying the same request cannot succeed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelRateLimited(AiError):
    """The model answered HTTP 429 (rate limit or quota): RESOURCE_EXHAUSTED. A retry after a
    backoff can succeed."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class ModelUnavailable(AiError):
    """The model could not be reached, answered 5xx, or cut its stream: UNAVAILABLE. A retry can
    succeed."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class ModelTimeout(AiError):
    """The model did not connect or send the next chunk within AI_REQUEST_TIMEOUT_MS:
    DEADLINE_EXCEEDED. A retry can succeed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True


class ModelMisconfigured(AiError):
    """The model refused our credentials (HTTP 401/403): FAILED_PRECONDITION. No retry succeeds
    until an operator fixes OPENAI_API_KEY."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ModelFailed(AiError):
    """Any other model failure (unexpected status, malformed reply): INTERNAL. A retry is
    unlikely to succeed."""

    code = grpc.StatusCode.INTERNAL


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and details for an exception; unknown ones are INTERNAL."""
    if isinstance(exc, AiError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
