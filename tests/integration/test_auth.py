"""AUTH_MODE=jwt on real pods: no call without a valid token (forged, expired, alg=none, wrong
key, none at all), nothing stored by a refused call, and tokens carried on when a pod forwards."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from common.auth import mint, new_secret
from common.ring import HashRing
from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import common_pb2, session_pb2, session_pb2_grpc

PODS = ["pod-a", "pod-b"]


@pytest.fixture
def secured(own_stack: Stack, tmp_path: Path) -> tuple[Stack, bytes, Path]:
    secret_file = tmp_path / "auth-secret"
    secret_file.write_bytes(new_secret())
    own_stack.start_redis()
    for pod in PODS:
        own_stack.start_pod(pod, AUTH_MODE="jwt", AUTH_SECRET_FILE=str(secret_file))
    eventually(lambda: all(own_stack.member_views().get(p) == PODS for p in PODS), timeout=30)
    return own_stack, secret_file.read_bytes().strip(), secret_file


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def append(sid: str, text: str) -> session_pb2.AppendMessageRequest:
    return session_pb2.AppendMessageRequest(
        session_id=sid, role=common_pb2.ROLE_USER, content=text, client_message_id=text
    )


@pytest.mark.parametrize(
    "credential",
    ["none", "expired", "other-key", "garbage", "basic"],
)
async def test_calls_without_a_valid_token_are_unauthenticated_and_store_nothing(
    secured: tuple[Stack, bytes, Path], credential: str
) -> None:
    stack, secret, _ = secured
    metadata = {
        "none": (),
        "expired": bearer(mint(secret, "ann", -60)),
        "other-key": bearer(mint(new_secret(), "ann", 60)),
        "garbage": bearer("a.b.c"),
        "basic": (("authorization", "Basic YW5uOnB3"),),
    }[credential]
    async with grpc.aio.insecure_channel(stack.pod_addrs["pod-a"]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        for call in (
            stub.AppendMessage(append("auth-1", "sneaky"), metadata=metadata, timeout=10),
            stub.GetSession(
                session_pb2.GetSessionRequest(session_id="auth-1"), metadata=metadata, timeout=10
            ),
            stub.GetUserUsage(
                session_pb2.GetUserUsageRequest(user="ann"), metadata=metadata, timeout=10
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = stub.Subscribe(
            session_pb2.SubscribeRequest(session_id="auth-1", after_seq=0), metadata=metadata
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:  # nothing stored: not even an owner
            await stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id="auth-1"),
                metadata=bearer(mint(secret, "ann", 60)),
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_valid_token_works_also_through_a_pod_that_forwards(
    secured: tuple[Stack, bytes, Path],
) -> None:
    stack, secret, _ = secured
    sid = next(s for s in (f"auth-f{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-b")
    token = bearer(mint(secret, "ann", 60))
    async with grpc.aio.insecure_channel(stack.pod_addrs["pod-a"]) as channel:  # not the owner
        stub = session_pb2_grpc.SessionServiceStub(channel)
        reply = await stub.AppendMessage(append(sid, "hello"), metadata=token, timeout=10)
        session = await stub.GetSession(
            session_pb2.GetSessionRequest(session_id=sid), metadata=token, timeout=10
        )
    assert reply.message.user == "ann" and session.session.message_count == 1
    assert session.session.owner == "ann"  # the first write claimed the session


async def test_the_cli_mints_a_token_the_pods_accept(secured: tuple[Stack, bytes, Path]) -> None:
    stack, _, secret_file = secured
    argv = [sys.executable, "-m", "admin", "token", "--user", "cli-user"]
    argv += ["--secret-file", str(secret_file)]
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    minted = done.stdout.strip()
    async with grpc.aio.insecure_channel(stack.pod_addrs["pod-b"]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        await stub.AppendMessage(append("auth-cli", "hi"), metadata=bearer(minted), timeout=10)
        reply = await stub.GetSession(
            session_pb2.GetSessionRequest(session_id="auth-cli"),
            metadata=bearer(minted),
            timeout=10,
        )
    assert reply.session.owner == "cli-user"
