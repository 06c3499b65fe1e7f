"""Shared fixtures: a real Redis, and the whole system as real processes (the builder in
deploy/stack/, with the specs of tests/support/stacks.py)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack.processes import RedisServer
from deploy.stack.running import Stack
from deploy.stack.spec import started
from tests.support.stacks import CORE

_counter = itertools.count()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server (AOF, fsync always) for one test."""
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, dev model, AI service and session service, shared by a test session."""
    with started(tmp_path_factory.mktemp("core"), CORE) as running:
        yield running


@pytest.fixture(scope="session")
def stack(core: Stack) -> Iterator[Stack]:
    """`core` plus the gateway in front of it."""
    try:
        core.start_gateway()
        yield core
    finally:
        if core.gateway is not None:
            core.gateway.stop()
            core.gateway = None


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A Stack whose processes one test may kill; started piecemeal by the test."""
    running = Stack(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def session_id() -> str:
    """A session id no other test uses."""
    return f"t{next(_counter)}-{uuid.uuid4().hex[:12]}"
