"""The fuzz battery's stack: real redis-server, session pod and gateway, with the echo model."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from common.grpc_server import CHANNEL_OPTIONS
from durablechat.v1 import session_pb2_grpc
from tests.security import outcomes
from tests.security.echo_model import EchoModel
from tests.security.stored import WriteLedger
from tests.stack import Stack

SSE_HEARTBEAT_MS = 200
"""An event stream notices a client that left at its next heartbeat: the fuzzers drop many."""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack per fuzz module, so a crash one module provokes cannot hide in another's."""
    model = EchoModel()
    running = Stack(tmp_path_factory.mktemp("fuzz"))
    try:
        model.start()
        running.model_url = model.url
        running.start_redis()
        running.start_ai()
        running.start_session()
        running.start_gateway(SSE_HEARTBEAT_MS=str(SSE_HEARTBEAT_MS))
        yield running
    finally:
        running.close()
        model.stop()


@pytest.fixture(scope="module")
def pod(fuzz_stack: Stack) -> Iterator[session_pb2_grpc.SessionServiceStub]:
    """A blocking stub of the session pod (hypothesis drives plain functions)."""
    with grpc.insecure_channel(fuzz_stack.session_addr, options=CHANNEL_OPTIONS) as channel:
        yield session_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture(scope="module")
def ledger(pod: session_pb2_grpc.SessionServiceStub) -> WriteLedger:
    return WriteLedger(pod)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Lists the statuses the fuzzers saw, so a run shows what the services answered."""
    lines = outcomes.summary()
    if lines:
        terminalreporter.section("fuzz outcomes")
        for line in lines:
            terminalreporter.write_line(line)
