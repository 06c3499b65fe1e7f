"""Shared fixtures: a real Redis, and the whole system as real processes."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RedisServer
from tests.stack import Stack

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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, dev model, AI service, session service and gateway, shared by a test session."""
    running = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running.start_all()
    finally:
        running.close()


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
