"""Fuzzing every SessionService method over real gRPC: arbitrary bytes as the request, hostile
typed requests and extra wire fields, and hostile call metadata. The service may refuse, never
fail: no INTERNAL or UNKNOWN, the pod stays up, and a refused call stores nothing."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from durablechat.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, session_pb2
from tests.helpers import wait_grpc_serving
from tests.security.outcomes import record
from tests.security.stored import WriteLedger, storable
from tests.security.strategies import digit_runs, fuzz, hostile_text, json_text
from tests.security.wire import (
    REQUEST_TYPES,
    SERVICE,
    decodable_fields,
    mostly,
    parsed,
    typed_requests,
)
from tests.stack import Stack

ACCEPTABLE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Refusals a client can act on. INTERNAL and UNKNOWN mean the input broke the server."""
METHODS = list(REQUEST_TYPES)
TIMEOUT_S = 10.0
SEEDED = "fz-grpc-seeded"
"""A session with messages, state and a finished answer, for the readers to chew on."""
_fresh_ids = itertools.count()


def targets(method: str) -> st.SearchStrategy[str]:
    """The fuzz namespace: sessions only this module's fuzzers touch. State patches go to a
    fresh session each, so one that corrupts the state cannot fail the examples after it."""
    if method == "UpdateState":
        return st.builds(lambda: f"fz-grpc-updatestate-{next(_fresh_ids)}")
    if method == "DeleteThread":  # the seeded session must stay for the other methods
        return st.just("fz-grpc-deletethread")
    return st.sampled_from([f"fz-grpc-{method.lower()}", SEEDED])


@pytest.fixture(scope="module")
def channel(fuzz_stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzz_stack.session_addr) as opened:
        yield opened


@pytest.fixture(scope="module", autouse=True)
def seeded(pod: Any) -> None:
    pod.AppendMessage(
        session_pb2.AppendMessageRequest(
            session_id=SEEDED, role=common_pb2.ROLE_SYSTEM, content="be brief"
        ),
        timeout=TIMEOUT_S,
    )
    pod.UpdateState(
        session_pb2.UpdateStateRequest(session_id=SEEDED, patch_json='{"step": {"n": 1}}'),
        timeout=TIMEOUT_S,
    )
    pod.SendPrompt(
        session_pb2.SendPromptRequest(session_id=SEEDED, content="hello", user="ann"),
        timeout=TIMEOUT_S,
    )


def call(
    channel: grpc.Channel, method: str, data: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, str]:
    """Sends `data` as the serialized request; a Subscribe is read up to its CaughtUp."""
    path = SERVICE + method
    try:
        if method != "Subscribe":
            unary: Any = channel.unary_unary(path)  # no serializers: bytes go out as they are
            unary(data, timeout=TIMEOUT_S, metadata=metadata)
            return grpc.StatusCode.OK, ""
        streaming: Any = channel.unary_stream(path)
        stream = streaming(data, timeout=TIMEOUT_S, metadata=metadata)
        try:
            for raw in stream:
                reply = session_pb2.SubscribeResponse.FromString(raw)
                if reply.event.WhichOneof("kind") == "caught_up":
                    break
        finally:
            stream.cancel()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def sessions_of(method: str, data: bytes) -> set[str]:
    """The fuzz target and the session the server will decode from `data`, if storable."""
    out = {f"fz-grpc-{method.lower()}"}
    request = parsed(method, data)
    sid = getattr(request, "session_id", "")
    if sid and storable(sid):
        out.add(sid)
    return out


def attack(
    stack: Stack,
    channel: grpc.Channel,
    ledger: WriteLedger,
    method: str,
    data: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    """One call, judged: an acceptable status, a live pod, and nothing stored when refused."""
    sessions = sessions_of(method, data)
    before = {sid: ledger.known(sid) for sid in sessions}
    code, details = call(channel, method, data, metadata)
    record(f"grpc {method}", code.name)
    assert code in ACCEPTABLE, f"{method} answered {code.name}: {details!r}"
    assert stack.session is not None and stack.session.alive(), "the pod died"
    after = {sid: ledger.writes(sid) for sid in sessions}
    if code != grpc.StatusCode.OK:
        assert after == before, f"{method} refused with {code.name} but stored: {details!r}"
    return code


def prefixed(sid: str, tail: bytes) -> bytes:
    """A valid session id field, then arbitrary bytes."""
    encoded = sid.encode()
    return b"\x0a" + bytes([len(encoded)]) + encoded + tail


@pytest.mark.parametrize("method", METHODS)
def test_arbitrary_request_bytes_never_get_internal_or_unknown_and_store_nothing(
    method, fuzz_stack, channel, ledger
):
    """Attacks request decoding: any byte string as the serialized request, alone or after a
    valid session id (truncated varints, bad wire types, invalid UTF-8 in strings, groups)."""

    @fuzz(50)
    @example(data=b"\x80")  # a truncated varint
    @given(
        data=st.one_of(
            st.binary(max_size=256),
            st.binary(max_size=256).map(lambda b: prefixed(f"fz-grpc-{method.lower()}", b)),
        )
    )
    def run(data: bytes) -> None:
        attack(fuzz_stack, channel, ledger, method, data)

    run()
    wait_grpc_serving(fuzz_stack.session, fuzz_stack.session_addr)


def _patch(patch_json: str) -> session_pb2.UpdateStateRequest:
    sid = f"fz-grpc-updatestate-pinned-{next(_fresh_ids)}"
    return session_pb2.UpdateStateRequest(session_id=sid, patch_json=patch_json)


PINNED: dict[str, list[Any]] = {
    "UpdateState": [
        _patch('{"a": "\\ud800"}'),  # an escaped lone surrogate
        _patch('{"a": 1' + "0" * 4300 + "}"),  # past CPython's int() digit limit
        _patch('{"a": 1e400}'),  # out of double range: parsed as inf, stored as Infinity
    ],
}
"""Inputs the fuzzer found that break the service, run first on every run."""


@pytest.mark.parametrize("method", METHODS)
def test_hostile_typed_requests_never_get_internal_or_unknown_and_store_nothing(
    method, fuzz_stack, channel, ledger
):
    """Attacks validation: requests of the generated types with control characters, lookalike
    frames, text at the size limits (128 characters, 64 KiB), extreme and unnamed integers,
    JSON patches that are deep, huge or not JSON, plus undeclared fields of every wire type and
    a second copy of the request merged on the wire. An accepted patch leaves JSON state."""

    @fuzz(60)
    @given(
        request=typed_requests(method, targets(method)),
        merged=mostly(st.none(), typed_requests(method, targets(method))),
        extra=mostly(st.just(b""), decodable_fields()),
    )
    def run(request: Any, merged: Any, extra: bytes) -> None:
        data = request.SerializeToString() + extra
        if merged is not None:
            data += merged.SerializeToString()
        code = attack(fuzz_stack, channel, ledger, method, data)
        if method == "UpdateState" and code == grpc.StatusCode.OK:
            assert_state_is_json(channel, getattr(parsed(method, data), "session_id", ""))

    for request in PINNED.get(method, []):
        run = example(request=request, merged=None, extra=b"")(run)
    run()
    wait_grpc_serving(fuzz_stack.session, fuzz_stack.session_addr)


def test_request_over_the_message_size_limit_is_resource_exhausted_and_stores_nothing(
    fuzz_stack, channel, ledger
):
    """Attacks the transport limit: a 17 MiB prompt (the limit is 16 MiB)."""
    sid = "fz-grpc-sendprompt"
    request = session_pb2.SendPromptRequest(session_id=sid, content="x" * (17 * 1024 * 1024))
    code = attack(fuzz_stack, channel, ledger, "SendPrompt", request.SerializeToString())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


METADATA_KEYS = ("dc-hops", "authorization", "traceparent", "tracestate", "baggage", "x-fuzz")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@pytest.mark.parametrize("method", ["GetSession", "AppendMessage", "Subscribe"])
def test_hostile_call_metadata_never_gets_internal_or_unknown_and_stores_nothing(
    method, fuzz_stack, channel, ledger
):
    """Attacks what the server reads from headers: the pod-to-pod hop count (`dc-hops`),
    tokens, trace context and any other key, with printable values, digit runs past CPython's
    int() limit, and lookalikes."""
    sid = f"fz-grpc-{method.lower()}"
    request = REQUEST_TYPES[method](session_id=sid)
    if method == "AppendMessage":
        request = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="hi"
        )
    data = request.SerializeToString()
    value = st.one_of(
        st.text(alphabet=PRINTABLE, max_size=200).map(str.strip),
        digit_runs(),
        st.sampled_from(["-1", "2", "99", "1e9", "Bearer ", "Bearer a.b.c", "00-" + "0" * 32]),
    )
    key = st.one_of(
        st.sampled_from(METADATA_KEYS), st.from_regex(r"x-[a-z0-9_.-]{1,20}", fullmatch=True)
    )

    @fuzz(40)
    @example(metadata=[("dc-hops", "9" * 4301)])
    @given(metadata=st.lists(st.tuples(key, value), min_size=1, max_size=3))
    def run(metadata: list[tuple[str, str]]) -> None:
        attack(fuzz_stack, channel, ledger, method, data, tuple(metadata))

    run()
    wait_grpc_serving(fuzz_stack.session, fuzz_stack.session_addr)


def assert_state_is_json(channel: grpc.Channel, sid: str) -> None:
    """The session still answers, and its state is strict JSON (what clients and a reload
    parse)."""
    get = channel.unary_unary(
        SERVICE + "GetSession",
        request_serializer=session_pb2.GetSessionRequest.SerializeToString,
        response_deserializer=session_pb2.GetSessionResponse.FromString,
    )
    try:
        reply = get(session_pb2.GetSessionRequest(session_id=sid), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        raise AssertionError(f"GetSession answered {exc.code().name}: {exc.details()!r}") from exc
    state = json.loads(reply.session.state_json, parse_constant=_not_json)
    assert isinstance(state, dict)


def _not_json(name: str) -> Any:
    raise AssertionError(f"the stored state holds {name}, which is not JSON")


def test_an_accepted_state_patch_leaves_a_session_that_still_loads(fuzz_stack, channel):
    """Attacks the stored log: a patch the service accepts must be readable when the session is
    loaded again from Redis (a move to another pod, a restart, an idle passivation), or one
    request bricks the session for good. Numbers out of double range, escapes, nesting."""
    update = channel.unary_unary(
        SERVICE + "UpdateState",
        request_serializer=session_pb2.UpdateStateRequest.SerializeToString,
        response_deserializer=session_pb2.UpdateStateResponse.FromString,
    )
    hand_off = cluster_pb2_grpc.ClusterServiceStub(channel).HandOff

    @fuzz(40)
    @example(patch='{"a": 1e400}')
    @given(patch=st.one_of(json_text(), hostile_text()))
    def run(patch: str) -> None:
        sid = f"fz-grpc-reload-{next(_fresh_ids)}"
        try:
            update(
                session_pb2.UpdateStateRequest(session_id=sid, patch_json=patch), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            record("grpc UpdateState then reload", exc.code().name)
            assert exc.code() in ACCEPTABLE, f"UpdateState answered {exc.code().name}"
            return
        record("grpc UpdateState then reload", "OK")
        request = cluster_pb2.HandOffRequest(session_id=sid)
        hand_off(request, timeout=TIMEOUT_S, metadata=fuzz_stack.cluster_metadata)
        assert_state_is_json(channel, sid)

    run()
