"""openai failures map to the gRPC status the house rules name; unknown errors are INTERNAL."""

from __future__ import annotations

import grpc
import httpx2
import openai
import pytest

from ai_service.errors import status_for
from ai_service.provider import wrap_error

REQUEST = httpx2.Request("POST", "http://model.invalid/v1/chat/completions")


def status_error(status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=REQUEST, json={"error": {"message": "nope"}})
    return openai.APIStatusError("nope", response=response, body={"message": "nope"})


@pytest.mark.parametrize(
    ("status", "code"),
    [
        pytest.param(429, grpc.StatusCode.RESOURCE_EXHAUSTED, id="429"),
        pytest.param(500, grpc.StatusCode.UNAVAILABLE, id="500"),
        pytest.param(503, grpc.StatusCode.UNAVAILABLE, id="503"),
        pytest.param(400, grpc.StatusCode.INVALID_ARGUMENT, id="400"),
        pytest.param(401, grpc.StatusCode.FAILED_PRECONDITION, id="401"),
        pytest.param(403, grpc.StatusCode.FAILED_PRECONDITION, id="403"),
        pytest.param(404, grpc.StatusCode.INTERNAL, id="404"),
    ],
)
def test_http_status_maps_to_grpc_status(status: int, code: grpc.StatusCode) -> None:
    assert status_for(wrap_error(status_error(status)))[0] == code


def test_rejected_key_says_to_check_the_key() -> None:
    _, details = status_for(wrap_error(status_error(401)))

    assert "OPENAI_API_KEY" in details


def test_timeout_maps_to_deadline_exceeded() -> None:
    error = wrap_error(openai.APITimeoutError(request=REQUEST))

    assert status_for(error)[0] == grpc.StatusCode.DEADLINE_EXCEEDED


def test_connection_error_maps_to_unavailable() -> None:
    error = wrap_error(openai.APIConnectionError(request=REQUEST))

    assert status_for(error)[0] == grpc.StatusCode.UNAVAILABLE


def test_unknown_exception_is_internal_without_details() -> None:
    assert status_for(KeyError("secret")) == (grpc.StatusCode.INTERNAL, "internal error")
