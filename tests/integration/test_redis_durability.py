"""A pod refuses a Redis that does not fsync acknowledged writes (store/durability.py): it exits
with EXIT_NOT_DURABLE and one log line naming the setting and the override; with
REDIS_DURABILITY=trust the same pod serves. Checked on a real redis-server (everysec, no AOF,
CONFIG not permitted) and on every master of a Redis Cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from deploy.stack.ports import free_port
from deploy.stack.processes import RedisServer, python_module, wait_grpc_serving
from deploy.stack.redis_cluster import start_cluster
from session_service.__main__ import EXIT_NOT_DURABLE


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """A fresh redis-server (AOF, fsync always) whose settings a test weakens."""
    return redis_server


def pod_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SESSION_PORT": str(free_port()),
        "REDIS_URL": redis_url,
        "AI_SERVICE_ADDR": "127.0.0.1:1",
        "ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        **extra,
    }


def refusal_of(env: Mapping[str, str], tmp_path: Path) -> str:
    """Starts a pod that must exit EXIT_NOT_DURABLE; returns its one refusal line."""
    pod = python_module("pod-refused", "session_service", env, tmp_path)
    pod.start()
    assert pod.proc is not None
    try:
        code = pod.proc.wait(30)
    except subprocess.TimeoutExpired:
        pod.stop()
        pytest.fail(f"the pod served a Redis that does not fsync:\n{pod.log_tail()}")
    lines = [line for line in pod.log_path.read_text().splitlines() if "refusing to serve" in line]
    assert code == EXIT_NOT_DURABLE, pod.log_tail()
    assert len(lines) == 1, pod.log_tail()
    return lines[0]


def serves(env: Mapping[str, str], tmp_path: Path) -> None:
    pod = python_module("pod-trusting", "session_service", env, tmp_path)
    pod.start()
    try:
        wait_grpc_serving(pod, f"127.0.0.1:{env['SESSION_PORT']}", timeout=30)
    finally:
        pod.stop()


def test_pod_refuses_appendfsync_everysec_and_serves_with_the_override(redis, tmp_path):
    with redis.client() as client:
        client.config_set("appendfsync", "everysec")
    said = refusal_of(pod_env(redis.url, tmp_path), tmp_path)
    assert "appendfsync=everysec" in said and "REDIS_DURABILITY=trust" in said, said
    serves(pod_env(redis.url, tmp_path, REDIS_DURABILITY="trust"), tmp_path)


def test_pod_refuses_a_redis_without_its_append_only_file(redis, tmp_path):
    with redis.client() as client:
        client.config_set("appendonly", "no")
    said = refusal_of(pod_env(redis.url, tmp_path), tmp_path)
    assert "appendonly=no" in said, said


def test_pod_that_may_not_read_config_says_so_and_names_the_override(redis, tmp_path):
    """A managed Redis hides CONFIG (renamed or kept from the app's ACL user)."""
    with redis.client() as client:
        client.acl_setuser(
            "app", enabled=True, passwords=["+pw"], commands=["+@all", "-config"], keys=["*"],
            channels=["*"],
        )  # fmt: skip
    url = f"redis://app:pw@127.0.0.1:{redis.port}/0"
    said = refusal_of(pod_env(url, tmp_path), tmp_path)
    assert "CONFIG GET" in said and "REDIS_DURABILITY=trust" in said, said
    serves(pod_env(url, tmp_path, REDIS_DURABILITY="trust"), tmp_path)


def test_pod_checks_every_master_of_a_redis_cluster(tmp_path):
    cluster = start_cluster(tmp_path, 3)
    try:
        weak = cluster.nodes[2]
        with weak.client() as client:
            client.config_set("appendfsync", "no")
        said = refusal_of(pod_env(cluster.url, tmp_path, REDIS_CLUSTER="true"), tmp_path)
    finally:
        cluster.stop()
    assert weak.address in said and "appendfsync=no" in said, said
