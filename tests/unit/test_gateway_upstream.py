"""Proto <-> JSON conversion and the gRPC status -> HTTP mapping of the gateway."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from durablechat.v1 import common_pb2, session_pb2
from gateway.errors import GatewayError
from gateway.frames import AnswerDelta, AnswerEnded, AnswerStarted, CaughtUp, Logged
from gateway.upstream import http_status_for, upstream_error
from gateway.wire_json import event_from_proto, history_json, message_json, millis, state_object


@pytest.mark.parametrize(
    ("code", "status"),
    [
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, 400, id="invalid-argument"),
        pytest.param(grpc.StatusCode.NOT_FOUND, 404, id="not-found"),
        pytest.param(grpc.StatusCode.ABORTED, 409, id="aborted"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, 409, id="failed-precondition"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, id="resource-exhausted"),
        pytest.param(grpc.StatusCode.UNAVAILABLE, 503, id="unavailable"),
        pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, 504, id="deadline-exceeded"),
        pytest.param(grpc.StatusCode.INTERNAL, 500, id="internal"),
        pytest.param(grpc.StatusCode.UNKNOWN, 500, id="unknown"),
        pytest.param(grpc.StatusCode.PERMISSION_DENIED, 403, id="permission-denied"),
        pytest.param(grpc.StatusCode.UNAUTHENTICATED, 401, id="unauthenticated"),
    ],
)
def test_grpc_status_maps_to_http(code: grpc.StatusCode, status: int):
    assert http_status_for(code) == status


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        pytest.param(grpc.StatusCode.UNAVAILABLE, True, id="unavailable"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, True, id="resource-exhausted"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, True, id="failed-precondition"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, False, id="invalid-argument"),
        pytest.param(grpc.StatusCode.NOT_FOUND, False, id="not-found"),
        pytest.param(grpc.StatusCode.PERMISSION_DENIED, False, id="permission-denied"),
        pytest.param(grpc.StatusCode.UNAUTHENTICATED, False, id="unauthenticated"),
    ],
)
def test_upstream_error_keeps_code_message_and_retryability(code, retryable):
    exc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="why")
    error = upstream_error(exc)
    assert (error.code, error.message, error.retryable) == (code.name, "why", retryable)
    assert error.body() == {"error": {"code": code.name, "message": "why"}}


def test_message_json_has_role_name_and_epoch_millis():
    message = common_pb2.Message(
        seq=4,
        role=common_pb2.ROLE_ASSISTANT,
        content="hi",
        user="",
        created_at=Timestamp(seconds=1_700_000_000, nanos=123_456_789),
        answer_seq=3,
        answer_status=common_pb2.ANSWER_STATUS_COMPLETED,
    )
    entry = message_json(message)
    assert entry == {
        "seq": 4,
        "role": "assistant",
        "content": "hi",
        "user": "",
        "ts": 1_700_000_000_123,
    }
    assert history_json(entry) == {
        "role": "assistant",
        "content": "hi",
        "user": "",
        "ts": entry["ts"],
    }


def test_unset_timestamp_is_zero_millis():
    assert millis(Timestamp()) == 0


@pytest.mark.parametrize(
    ("state_json", "state"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("{}", {}, id="empty-object"),
        pytest.param('{"a": {"b": [1, null]}}', {"a": {"b": [1, None]}}, id="nested"),
    ],
)
def test_state_object_parses_the_state_text(state_json: str, state: dict[str, object]):
    assert state_object(state_json) == state


@pytest.mark.parametrize("state_json", ["[1]", "not json"])
def test_state_that_is_not_an_object_is_an_internal_error(state_json: str):
    with pytest.raises(GatewayError) as caught:
        state_object(state_json)
    assert caught.value.status == 500


def test_events_convert_to_plain_values():
    def event(**kind) -> session_pb2.SessionEvent:
        return session_pb2.SessionEvent(seq=7, offset=2, **kind)

    assert event_from_proto(event(answer_started=session_pb2.AnswerStarted(prompt_seq=6))) == (
        AnswerStarted(seq=7)
    )
    assert event_from_proto(event(answer_delta=session_pb2.AnswerDelta(text="x"))) == (
        AnswerDelta(answer_seq=7, offset=2, text="x")
    )
    assert event_from_proto(event(caught_up=session_pb2.CaughtUp())) == CaughtUp(seq=7, offset=2)
    assert event_from_proto(
        event(message_appended=session_pb2.MessageAppended(message=common_pb2.Message(seq=7)))
    ) == Logged(seq=7)
    assert event_from_proto(event(state_changed=session_pb2.StateChanged(version=2))) == Logged(7)
    answer = common_pb2.Message(
        seq=8, content="ab", answer_seq=5, answer_status=common_pb2.ANSWER_STATUS_FAILED
    )
    assert event_from_proto(
        event(answer_ended=session_pb2.AnswerEnded(message=answer, error="model down"))
    ) == AnswerEnded(seq=7, answer_seq=5, content="ab", status="FAILED", error="model down")
