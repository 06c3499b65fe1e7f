"""Shared by the feature tests that run on a module's `secure` stack (a SecureStack fixture)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.security.secure_stack import SecureStack, User


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
