"""The `durablechat` admin CLI against two real pods: members, where, sessions, drain, tail."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

from common.ring import HashRing
from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from tests.support.grpc_client import SessionClient

PODS = ["pod-a", "pod-b"]


def cli(addr: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admin", "--addr", addr, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tail_lines(addr: str, sid: str, count: int) -> list[dict[str, Any]]:
    """The first `count` lines `durablechat tail` prints, then it is stopped."""
    tail = subprocess.Popen(
        [sys.executable, "-m", "admin", "--addr", addr, "tail", sid, "--after", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        return [json.loads(tail.stdout.readline()) for _ in range(count)]
    finally:
        tail.terminate()
        tail.wait(10)
        if tail.stdout is not None:
            tail.stdout.close()


@pytest.fixture
def two_pods(own_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Two pods; `durablechat` gets the operator's credential from its environment (the pods'
    CLUSTER_SECRET_FILE; tests/security/test_admin_plane.py uses an admin token)."""
    monkeypatch.setenv("CLUSTER_SECRET_FILE", str(own_stack.cluster_secret_file))
    own_stack.start_redis()
    for pod in PODS:
        own_stack.start_pod(pod)
    return own_stack


async def test_members_where_sessions_and_drain(two_pods: Stack) -> None:
    addr = two_pods.pod_addrs["pod-a"]
    eventually(lambda: "2 pods" in cli(addr, "members").stdout)
    sids = [f"adm-{i}" for i in range(8)]
    client = SessionClient(addr)
    try:
        for sid in sids:
            await client.append(sid, "hello")
    finally:
        await client.close()
    on_b = [s for s in sids if HashRing(PODS).owner(s) == "pod-b"]
    assert on_b, "the ring put no test session on pod-b"

    where = cli(addr, "where", on_b[0])
    assert where.returncode == 0, where.stderr
    assert "ring pod  pod-b" in where.stdout and "held by   pod-b, epoch 1" in where.stdout
    listed = cli(addr, "sessions", "--ids").stdout
    assert all(f"      {s}" in listed for s in sids)

    drained = cli(addr, "drain", "pod-b")
    assert drained.returncode == 0, drained.stderr
    assert "pod-b drained; 0 sessions left on it" in drained.stdout
    assert "1 pods" in cli(addr, "members").stdout
    client = SessionClient(addr)
    try:
        await client.append(on_b[0], "after the drain")  # activates it on pod-a
    finally:
        await client.close()
    assert "held by   pod-a, epoch 2" in cli(addr, "where", on_b[0]).stdout


async def test_move_hands_a_session_off_and_the_next_call_activates_it_afresh(
    two_pods: Stack,
) -> None:
    addr = two_pods.pod_addrs["pod-a"]
    eventually(lambda: "2 pods" in cli(addr, "members").stdout)
    client = SessionClient(addr)
    try:
        await client.append("adm-move", "before")
        ring_pod = HashRing(PODS).owner("adm-move")
        moved = cli(addr, "move", "adm-move")
        assert moved.returncode == 0, moved.stderr
        assert f"handed off from {ring_pod}" in moved.stdout
        assert "held by   nobody" in cli(addr, "where", "adm-move").stdout
        await client.append("adm-move", "after")
        assert (await client.get("adm-move")).epoch == 2
        assert [m.content for m in await client.list_all("adm-move")] == ["before", "after"]
    finally:
        await client.close()
    assert "no pod holds" in cli(addr, "move", "adm-nobody").stdout


def test_a_bad_session_id_is_refused_with_its_status(two_pods: Stack) -> None:
    done = cli(two_pods.pod_addrs["pod-a"], "where", "bad id!")
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "Traceback" not in done.stderr


async def test_tail_prints_the_log_as_json_lines(two_pods: Stack) -> None:
    addr = two_pods.pod_addrs["pod-a"]
    client = SessionClient(addr)
    try:
        await client.append("adm-tail", "one")
        await client.append("adm-tail", "two")
    finally:
        await client.close()
    lines = await asyncio.to_thread(tail_lines, addr, "adm-tail", 3)
    assert [e["messageAppended"]["message"]["content"] for e in lines[:2]] == ["one", "two"]
    assert "caughtUp" in lines[2]
