"""Gateway errors: each carries its HTTP status and a gRPC status name for the JSON error body."""

from __future__ import annotations

from typing import Any

# HTTP statuses the router raises on its own, named with the gRPC vocabulary the body always uses.
CODE_FOR_HTTP_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GatewayError(Exception):
    """A request failed with a meaningful status; answered as `{"error": {"code", "message"}}`.

    HTTP 500, INTERNAL: a bug or an unexpected upstream answer; retrying may not help.
    """

    status = 500
    code = "INTERNAL"
    retryable = False
    retry_after_ms = 0
    """From a rate limit: sent as `Retry-After` (whole seconds, >= 1) and `retryAfterMs`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        body = error_body(self.code, self.message)
        if self.retry_after_ms:
            body["error"]["retryAfterMs"] = self.retry_after_ms
        return body

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After; WWW-Authenticate in a subclass)."""
        if not self.retry_after_ms:
            return {}
        return {"Retry-After": str(max(1, -(-self.retry_after_ms // 1000)))}


class BadRequest(GatewayError):
    """HTTP 400, INVALID_ARGUMENT: malformed input; the same request can never succeed."""

    status = 400
    code = "INVALID_ARGUMENT"


class UpstreamError(GatewayError):
    """The session service failed the call; status and code follow its gRPC status.

    `retryable` says whether the same call may succeed later (the owner moved, Redis came back).
    """

    def __init__(
        self, message: str, *, status: int, code: str, retryable: bool, retry_after_ms: int = 0
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one error shape of every HTTP answer that is not a success."""
    return {"error": {"code": code, "message": message}}


def code_for_http_status(status: int) -> str:
    """The gRPC status name the JSON body uses for an HTTP status the router chose."""
    return CODE_FOR_HTTP_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
