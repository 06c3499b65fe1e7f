"""Shared by integration tests: `people` for the feature tests that run on a module's `secure`
stack (a SecureStack fixture); `slow_stack`, a whole stack whose answers stream slowly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from deploy.stack.running import Stack
from deploy.stack.spec import started
from tests.support.secure import SecureStack, User
from tests.support.stacks import SLOW


@pytest.fixture
async def people(secure: SecureStack) -> AsyncIterator[dict[str, User]]:
    """ann on one pod, bob and vic on the other, with names no other test uses, so tests can
    share their module's stack."""
    tag = uuid.uuid4().hex[:8]
    made = {
        "ann": secure.user(f"ann-{tag}"),
        "bob": secure.user(f"bob-{tag}", "pod-b"),
        "vic": secure.user(f"vic-{tag}", "pod-b"),
    }
    try:
        yield made
    finally:
        for user in made.values():
            await user.close()


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole stack whose model waits before each token (tests/support/stacks.py SLOW)."""
    with started(tmp_path_factory.mktemp("slow-stack"), SLOW) as running:
        yield running
