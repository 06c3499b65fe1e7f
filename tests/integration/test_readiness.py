"""Readiness: a process answers gRPC health SERVING only once it can do its work. grpc's health
servicer answers the overall name "" SERVING from the start, so a server sets NOT_SERVING before
it starts (common/grpc_server.py). Checked on the search indexer, whose stacks wait on "" and
whose contract is "SERVING once caught up" (docs/search.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.stack.ports import free_port
from deploy.stack.processes import Process, python_module
from deploy.stack.waits import eventually

SEARCH = "durablechat.v1.SearchService"


@pytest.fixture
def search_without_redis(tmp_path: Path) -> Iterator[str]:
    """A search indexer whose Redis refuses connections: it can never catch up."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "SEARCH_PORT": address.rsplit(":", 1)[1],
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}",  # nothing listens there
        "SEARCH_DB": str(tmp_path / "search.db"),
        "AUTH_MODE": "off",
    }
    proc: Process = python_module("search", "session_service.search", env, tmp_path)
    proc.start()
    try:
        yield address
    finally:
        proc.stop()


def status(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status)


def test_a_search_indexer_that_cannot_catch_up_is_not_serving(search_without_redis: str) -> None:
    answered = eventually(lambda: status(search_without_redis, SEARCH), timeout=20)
    assert answered == health_pb2.HealthCheckResponse.NOT_SERVING
    assert status(search_without_redis, "") == health_pb2.HealthCheckResponse.NOT_SERVING
