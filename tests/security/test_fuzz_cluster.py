"""Fuzzing ClusterService (ListMembers, GetPodStatus, HandOff, Drain) on both pods' ports and
through Envoy with access control on (AUTH_MODE=jwt), as every caller of the cast (cast.py),
users included: issue 15 makes these admin and pod-to-pod calls, so anonymous callers, bad
tokens and plain user tokens (with any `dc-cluster-key` guess) are refused (UNAUTHENTICATED or
PERMISSION_DENIED; a request that does not decode may be INVALID_ARGUMENT; Envoy may not route
the service at all, UNIMPLEMENTED) and nothing is obeyed: no status or member list comes back,
no session moves, no pod drains, nothing is stored (verdict.py).

This module has its own stack (the conftest's is per module) and runs Drain last, so a drain
that is obeyed fails its test without breaking any other.

Replaying a failure: tests/security/fuzz-examples/ (README.md there), as test_fuzz_grpc.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import example, given
from hypothesis import strategies as st

from durablechat.v1 import cluster_pb2
from tests.support.fuzz.cast import Caller, Room, admin_token
from tests.support.fuzz.outcomes import record
from tests.support.fuzz.strategies import fuzz
from tests.support.fuzz.verdict import Witness
from tests.support.fuzz.wire import OTHER_SERVICES, decodable_fields, mostly
from tests.support.secure import SecureStack

pytestmark = pytest.mark.slow

SERVICE = "durablechat.v1.ClusterService"
TIMEOUT_S = 20.0
ROLES = ("owner", "member", "viewer", "outsider", "anonymous", "expired", "forged", "alg-none")
REFUSED = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)
KEY_GUESSES = st.one_of(
    st.sampled_from(["", "secret", "dev", "0" * 64, "null"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
)
"""Values a user might try as the pods' `dc-cluster-key` (printable ASCII: grpcio refuses to
send other header values, with a client-side INTERNAL)."""


ENVOY = "envoy"
ENVOY_CALLS_PER_IP_MIN = 1_000_000
"""Envoy's per-IP gRPC limit, far above what the fuzzers send (test_edge_limits.py tests it)."""


@pytest.fixture(scope="module")
def pods(fuzz_stack: SecureStack) -> Iterator[dict[str, grpc.Channel]]:
    """A channel to each pod and one through Envoy (in front of pod-a): every port a user may
    reach."""
    stack = fuzz_stack.stack
    envoy = stack.start_envoy(
        sessions=[stack.pod_addrs["pod-a"]],
        overrides={"grpc_calls_per_ip_min": ENVOY_CALLS_PER_IP_MIN},
    )
    channels = {p: grpc.insecure_channel(a) for p, a in stack.pod_addrs.items()}
    channels[ENVOY] = grpc.insecure_channel(stack.envoy_url.removeprefix("http://"))
    try:
        yield channels
    finally:
        for channel in channels.values():
            channel.close()
        envoy.stop()


def request_bytes(method: str, room: Room) -> st.SearchStrategy[bytes]:
    """The method's request about the room (or any session), maybe with stray fields, or any
    bytes."""
    kind = OTHER_SERVICES[SERVICE][method]
    fields = (
        {"session_id": st.sampled_from([room.session_id, ""])}
        if method
        in (
            "GetPodStatus",
            "HandOff",
        )
        else {}
    )
    typed = st.builds(kind, **fields).map(lambda r: r.SerializeToString())
    extra = mostly(st.just(b""), decodable_fields())
    return mostly(st.tuples(typed, extra).map(b"".join), st.binary(max_size=64))


def serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def attack(
    witness: Witness,
    pods: dict[str, grpc.Channel],
    caller: Caller,
    method: str,
    pod: str,
    data: bytes,
    key: str | None,
) -> None:
    """One cluster call as a non-admin, judged: refused, nothing stored, every pod serving."""
    metadata = caller.metadata() + ((("dc-cluster-key", key),) if key is not None else ())
    what = f"{method} on {pod} as {caller.role}" + (" with a key guess" if key else "")
    witness.before()
    unary: Any = pods[pod].unary_unary(f"/{SERVICE}/{method}")
    try:
        unary(data, metadata=metadata, timeout=TIMEOUT_S)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    record(f"grpc {method} via {'envoy' if pod == ENVOY else 'a pod'}", code.name)
    refused = REFUSED | ({grpc.StatusCode.UNIMPLEMENTED} if pod == ENVOY else set())
    assert code in refused, f"{what} was answered {code.name} {details!r}: users must be refused"
    witness.after(what, stores_nothing=True)
    for name, channel in pods.items():
        if name != ENVOY:
            assert serving(channel), f"{what}: pod {name} stopped serving"


def test_the_admin_credential_reads_pod_status(fuzz_stack: SecureStack, pods) -> None:
    """The control: the operators' credential still works, so the refusals below are about
    the caller, not a broken service."""
    admin = (("authorization", f"Bearer {admin_token(fuzz_stack.secret)}"),)
    for name, channel in pods.items():
        if name == ENVOY:
            continue
        status: Any = channel.unary_unary(
            f"/{SERVICE}/GetPodStatus",
            request_serializer=cluster_pb2.GetPodStatusRequest.SerializeToString,
            response_deserializer=cluster_pb2.GetPodStatusResponse.FromString,
        )
        reply = status(cluster_pb2.GetPodStatusRequest(), metadata=admin, timeout=TIMEOUT_S)
        assert reply.pod_id == name and not reply.draining


@pytest.mark.parametrize("method", ["ListMembers", "GetPodStatus", "HandOff", "Drain"])
def test_an_undecodable_cluster_request_is_invalid_argument_not_unknown(
    method, fuzz_stack: SecureStack, pods
) -> None:
    """Attacks request decoding on the cluster plane, with the admin credential (so the call
    gets that far): bytes that are not the request message were grpcio's UNKNOWN with an error
    log each; they are INVALID_ARGUMENT and change nothing (found by this fuzzer). A truncated
    varint never decodes, so even Drain is safe to send."""
    admin = (("authorization", f"Bearer {admin_token(fuzz_stack.secret)}"),)
    unary: Any = pods["pod-a"].unary_unary(f"/{SERVICE}/{method}")
    with pytest.raises(grpc.RpcError) as refused:
        unary(b"\x08\x80", metadata=admin, timeout=TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert serving(pods["pod-a"])


@pytest.mark.parametrize("method", ["ListMembers", "GetPodStatus", "HandOff"])
def test_cluster_calls_by_users_and_anonymous_are_refused_and_store_nothing(
    method, witness, pods, cast: dict[str, Caller], room: Room
):
    """Attacks the admin and pod-to-pod plane with a user's reach: the member list, what a pod
    holds (session ids of every room), and hand-offs of the room (in a loop: a session that
    never becomes writable), as anonymous, bad tokens and each of the room's people, with or
    without a guessed cluster key, on either pod or through Envoy."""

    @fuzz(12, f"cluster-{method}")
    @example(role="anonymous", pod="pod-a", data=b"", key=None)
    @example(role="owner", pod="pod-a", data=b"", key=None)
    @example(role="anonymous", pod=ENVOY, data=b"", key=None)
    @given(
        role=st.sampled_from(ROLES),
        pod=st.sampled_from(sorted(pods)),
        data=request_bytes(method, room),
        key=mostly(st.none(), KEY_GUESSES),
    )
    def run(role: str, pod: str, data: bytes, key: str | None) -> None:
        attack(witness, pods, cast[role], method, pod, data, key)

    run()


def test_drain_by_users_and_anonymous_is_refused_and_every_pod_keeps_serving(
    witness, pods, cast: dict[str, Caller], room: Room
):
    """Attacks availability (issue 15's opening report: one anonymous Drain took the service
    down until a restart): Drain as anonymous, bad tokens and each of the room's people, with
    or without a guessed cluster key, on either pod or through Envoy. Runs last in this
    module."""

    @fuzz(8, "cluster-Drain")
    @example(role="anonymous", pod=ENVOY, data=b"", key=None)
    @example(role="anonymous", pod="pod-a", data=b"", key=None)
    @example(role="owner", pod="pod-b", data=b"", key=None)
    @given(
        role=st.sampled_from(ROLES),
        pod=st.sampled_from(sorted(pods)),
        data=request_bytes("Drain", room),
        key=mostly(st.none(), KEY_GUESSES),
    )
    def run(role: str, pod: str, data: bytes, key: str | None) -> None:
        attack(witness, pods, cast[role], "Drain", pod, data, key)

    run()
