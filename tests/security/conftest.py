"""The fuzz battery's stack: access control on (AUTH_MODE=jwt), two session pods (so calls get
forwarded), the AI service on the echo model, the search indexer and the gateway; the people the
fuzzers act as (cast.py) and what the stack stores (snapshot.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.grpc_server import CHANNEL_OPTIONS
from tests.support.fakes.echo_model import EchoModel
from tests.support.fuzz import outcomes
from tests.support.fuzz.cast import Caller, Room, cast_of
from tests.support.fuzz.settings import (
    GATEWAY_ENV,
    POD_ENV,
    SEARCH_ENV,
)
from tests.support.fuzz.snapshot import Answers, Stored
from tests.support.fuzz.verdict import Witness
from tests.support.secure import SecureStack, secure_stack


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """One stack per fuzz module, so a crash one module provokes cannot hide in another's."""
    model = EchoModel()
    model.start()
    try:
        with secure_stack(
            tmp_path_factory.mktemp("fuzz"),
            pod_env=POD_ENV,
            search=True,
            search_env=SEARCH_ENV,
            gateway_env=GATEWAY_ENV,
            model_url=model.url,
        ) as running:
            yield running
    finally:
        model.stop()


@pytest.fixture(scope="module")
def cast(fuzz_stack: SecureStack) -> dict[str, Caller]:
    """Every caller by role: owner, member, viewer, outsider, anonymous, expired, forged..."""
    return cast_of(fuzz_stack.secret)


@pytest.fixture(scope="module")
def room(fuzz_stack: SecureStack, cast: dict[str, Caller]) -> Iterator[Room]:
    """The room the cast shares; checked intact after each module."""
    made = Room(fuzz_stack.stack.pod_addrs["pod-a"], cast)
    yield made
    made.assert_intact()


@pytest.fixture(scope="module")
def channel(fuzz_stack: SecureStack) -> Iterator[grpc.Channel]:
    """A channel to one pod (the other one gets forwarded calls)."""
    address = fuzz_stack.stack.pod_addrs["pod-a"]
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as opened:
        yield opened


@pytest.fixture(scope="module")
def stored(fuzz_stack: SecureStack) -> Iterator[Stored]:
    stack = fuzz_stack.stack
    assert stack.redis is not None
    reader = Stored(stack.redis.port, Path(stack.workdir) / "attachments")
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture(scope="module")
def witness(fuzz_stack: SecureStack, stored: Stored, channel: grpc.Channel) -> Witness:
    """Judges what each call stored; see verdict.py."""
    stack = fuzz_stack.stack
    processes = {**stack.pods, "gateway": stack.gateway, "search": stack.search, "ai": stack.ai}

    def dead() -> list[str]:
        return [name for name, proc in processes.items() if proc is not None and not proc.alive()]

    return Witness(stored, Answers(channel), dead)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Lists the statuses the fuzzers saw, so a run shows what the services answered."""
    lines = outcomes.summary()
    if lines:
        terminalreporter.section("fuzz outcomes")
        for line in lines:
            terminalreporter.write_line(line)
