"""The cluster and admin planes (common/planes.py, session_service/rpc/operators.py) with
AUTH_MODE=jwt on real processes: two session pods, the AI service, the gateway and a real Envoy in
front, as `make run` starts them. Each test names the attack it stops: users, anonymous or not,
never reach ClusterService, the AI service or another pod's trust, on the pod port or
through Envoy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.auth import mint, new_secret
from common.ring import HashRing
from common.wire import CLUSTER_KEY, HOPS_KEY
from deploy.stack.processes import ROOT
from deploy.stack.waits import eventually
from durablechat.v1 import (
    ai_pb2,
    ai_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    session_pb2,
    session_pb2_grpc,
)
from tests.support.edge import Edge, running_edge

PODS = ["session-1", "session-2"]
GRPCURL = str(ROOT / ".venv" / "bin" / "grpcurl")
Metadata = tuple[tuple[str, str], ...]

CALLS = {
    "Drain": cluster_pb2.DrainRequest(),
    "HandOff": cluster_pb2.HandOffRequest(session_id="plane-s1"),
    "GetPodStatus": cluster_pb2.GetPodStatusRequest(),
    "ListMembers": cluster_pb2.ListMembersRequest(),
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """`make run`'s topology with a second pod; Envoy routes to the first."""
    workdir = tmp_path_factory.mktemp("planes")
    with running_edge(workdir, secure=True) as running:
        auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(workdir / "auth-secret")}
        running.stack.start_pod("session-2", **auth)
        key = running.stack.cluster_metadata
        addrs = [running.stack.session_addr, running.stack.pod_addrs["session-2"]]
        eventually(lambda: all(len(members(a, key).members) == 2 for a in addrs), timeout=30)
        yield running


def members(address: str, metadata: Metadata) -> cluster_pb2.ListMembersResponse:
    with grpc.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        reply: cluster_pb2.ListMembersResponse = stub.ListMembers(
            cluster_pb2.ListMembersRequest(), timeout=10, metadata=metadata
        )
        return reply


def cluster_call(address: str, method: str, metadata: Metadata) -> grpc.StatusCode:
    """The status of one ClusterService call (OK when obeyed)."""
    with grpc.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        try:
            getattr(stub, method)(CALLS[method], timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def envoy_addr(edge: Edge) -> str:
    return edge.url.removeprefix("http://")


def pod_status(edge: Edge) -> cluster_pb2.GetPodStatusResponse:
    with grpc.insecure_channel(edge.stack.session_addr) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        reply: cluster_pb2.GetPodStatusResponse = stub.GetPodStatus(
            cluster_pb2.GetPodStatusRequest(),
            timeout=10,
            metadata=bearer(edge.token("ops", admin=True)),
        )
        return reply


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def cli(edge: Edge, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    """`durablechat` (python -m admin) against the first pod, with only the credential given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLUSTER_SECRET_FILE", "DURABLECHAT_ADMIN_TOKEN")
    }
    if token:
        env["DURABLECHAT_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "admin", "--addr", edge.stack.session_addr, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def owned_by(pod: str, prefix: str) -> str:
    return next(s for s in (f"{prefix}-{i}" for i in range(1000)) if HashRing(PODS).owner(s) == pod)


@pytest.mark.parametrize("method", list(CALLS))
def test_anonymous_cluster_call_is_refused_on_the_pod_port(edge: Edge, method: str) -> None:
    assert cluster_call(edge.stack.session_addr, method, ()) == grpc.StatusCode.UNAUTHENTICATED
    assert not pod_status(edge).draining


@pytest.mark.parametrize("method", list(CALLS))
def test_user_token_cluster_call_is_refused_on_the_pod_port(edge: Edge, method: str) -> None:
    token = bearer(edge.token("mallory"))
    assert cluster_call(edge.stack.session_addr, method, token) == grpc.StatusCode.PERMISSION_DENIED
    assert not pod_status(edge).draining


@pytest.mark.parametrize("who", ["anonymous", "user", "admin"])
@pytest.mark.parametrize("method", list(CALLS))
def test_cluster_call_through_envoy_is_refused(edge: Edge, method: str, who: str) -> None:
    """Envoy does not route ClusterService at all: not even an admin gets through the edge."""
    metadata = {
        "anonymous": (),
        "user": bearer(edge.token("mallory")),
        "admin": bearer(edge.token("ops", admin=True)),
    }[who]
    assert cluster_call(envoy_addr(edge), method, metadata) == grpc.StatusCode.PERMISSION_DENIED
    assert not pod_status(edge).draining


def test_admin_claim_in_a_token_signed_with_another_key_is_refused(edge: Edge) -> None:
    forged = mint(new_secret(), "mallory", 600, admin=True)
    for method in CALLS:
        code = cluster_call(edge.stack.session_addr, method, bearer(forged))
        assert code == grpc.StatusCode.UNAUTHENTICATED, method


def test_forged_cluster_key_is_refused(edge: Edge) -> None:
    forged = ((CLUSTER_KEY, new_secret().decode()),)
    for method in CALLS:
        code = cluster_call(edge.stack.session_addr, method, forged)
        assert code == grpc.StatusCode.UNAUTHENTICATED, method
    assert not pod_status(edge).draining


def test_revoked_admin_token_is_refused(edge: Edge) -> None:
    token = edge.token("ops-leaked", admin=True)
    assert (
        cluster_call(edge.stack.session_addr, "GetPodStatus", bearer(token)) == grpc.StatusCode.OK
    )
    assert edge.stack.redis is not None
    done = subprocess.run(
        [sys.executable, "-m", "admin", "revoke", "--user", "ops-leaked"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": edge.stack.redis.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    eventually(
        lambda: (
            cluster_call(edge.stack.session_addr, "GetPodStatus", bearer(token))
            == grpc.StatusCode.UNAUTHENTICATED
        ),
        timeout=15,
    )


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_anonymous_and_user_drain_are_refused_and_chat_still_works(edge: Edge) -> None:
    """The issue's attack as written (grpcurl Drain, no token and a user's token, on the pod port
    and through Envoy), then a prompt is answered and the pod is still SERVING."""
    user = f"authorization: Bearer {edge.token('mallory')}"
    for address in (edge.stack.session_addr, envoy_addr(edge)):
        for headers in ((), ("-H", user)):
            done = grpcurl(*headers, "-d", "{}", address, "durablechat.v1.ClusterService/Drain")
            assert done.returncode != 0, done.stdout
            assert "Unauthenticated" in done.stderr or "PermissionDenied" in done.stderr, (
                done.stderr
            )
    assert serving(edge.stack.session_addr) and not pod_status(edge).draining
    with grpc.insecure_channel(edge.stack.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        ann = bearer(edge.token("ann"))
        request = session_pb2.SendPromptRequest(session_id="plane-chat", content="hi tokens=3")
        stub.SendPrompt(request, timeout=15, metadata=ann)

        def answered() -> bool:
            page = stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id="plane-chat"), timeout=10, metadata=ann
            )
            return any(
                m.role == common_pb2.ROLE_ASSISTANT and m.content == "tok0 tok1 tok2"
                for m in page.messages
            )

        eventually(answered, timeout=30)


def test_client_sent_hops_without_the_cluster_key_have_no_effect(edge: Edge) -> None:
    """`dc-hops` at the limit would make a pod refuse to forward (UNAVAILABLE): from a client
    without the key it is ignored and the call is forwarded as usual. With the key (a pod) it
    still counts, which shows the header is what is being ignored."""
    sid = owned_by("session-2", "plane-hops")
    hops = ((HOPS_KEY, "2"),)
    ann = bearer(edge.token("ann"))
    with grpc.insecure_channel(edge.stack.session_addr) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        request = session_pb2.GetSessionRequest(session_id=sid)
        with pytest.raises(grpc.RpcError) as pod_said:
            stub.GetSession(
                request, timeout=10, metadata=(*hops, *edge.stack.cluster_metadata, *ann)
            )
        assert pod_said.value.code() == grpc.StatusCode.UNAVAILABLE
        append = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="forwarded anyway"
        )
        assert stub.AppendMessage(append, timeout=15, metadata=(*hops, *ann)).message.seq >= 1


def test_cluster_headers_from_clients_are_stripped_at_envoy(edge: Edge) -> None:
    """Even the real key and a hop count at the limit, sent through Envoy, reach no pod: the call
    is forwarded to the owner instead of being refused for its hops."""
    sid = owned_by("session-2", "plane-edge")
    metadata = ((HOPS_KEY, "2"), *edge.stack.cluster_metadata, *bearer(edge.token("ann")))
    with grpc.insecure_channel(envoy_addr(edge)) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        append = session_pb2.AppendMessageRequest(
            session_id=sid, role=common_pb2.ROLE_USER, content="through the edge"
        )
        assert stub.AppendMessage(append, timeout=15, metadata=metadata).message.seq >= 1


def test_reflection_through_envoy_does_not_list_cluster_service(edge: Edge) -> None:
    done = grpcurl(envoy_addr(edge), "list")
    assert done.returncode != 0
    assert "ClusterService" not in done.stdout + done.stderr
    assert "PermissionDenied" in done.stderr, done.stderr


def generate(edge: Edge, metadata: Metadata) -> list[Any]:
    with grpc.insecure_channel(edge.stack.ai_addr) as channel:
        stub = ai_pb2_grpc.AiServiceStub(channel)
        request = ai_pb2.GenerateRequest(
            turns=[ai_pb2.ChatTurn(role=common_pb2.ROLE_USER, content="free model tokens=3")]
        )
        return list(stub.Generate(request, timeout=15, metadata=metadata))


def test_generate_without_the_cluster_key_is_refused(edge: Edge) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        generate(edge, bearer(edge.token("mallory")))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert generate(edge, edge.stack.cluster_metadata)  # a pod's call is served
    assert serving(edge.stack.ai_addr)  # health checks need no key


def test_ai_service_reflection_without_the_cluster_key_is_refused(edge: Edge) -> None:
    done = grpcurl(edge.stack.ai_addr, "list")
    assert done.returncode != 0
    assert "AiService" not in done.stdout


def test_cli_without_a_credential_is_refused(edge: Edge) -> None:
    done = cli(edge, "members")
    assert done.returncode == 1
    assert "UNAUTHENTICATED" in done.stderr and "Traceback" not in done.stderr
    user = cli(edge, "sessions", token=edge.token("mallory"))
    assert user.returncode == 1 and "PERMISSION_DENIED" in user.stderr


def test_admin_token_drives_members_where_and_drain(edge: Edge) -> None:
    admin = edge.token("ops", admin=True)
    listed = cli(edge, "members", token=admin)
    assert listed.returncode == 0, listed.stderr
    assert "2 pods" in listed.stdout
    where = cli(edge, "where", "plane-chat", token=admin)
    assert where.returncode == 0 and "ring pod" in where.stdout, where.stderr
    # A third pod to drain, so the others keep serving the module's tests.
    auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(edge.stack.workdir / "auth-secret")}
    edge.stack.start_pod("session-3", **auth)
    eventually(lambda: "3 pods" in cli(edge, "members", token=admin).stdout, timeout=30)
    drained = cli(edge, "drain", "session-3", token=admin)
    assert drained.returncode == 0, drained.stderr
    assert "session-3 drained" in drained.stdout
    assert "2 pods" in cli(edge, "members", token=admin).stdout
    edge.stack.pods.pop("session-3").stop()
