"""common/event_loop.py: uvloop by default, asyncio on request, an unknown loop refused."""

from __future__ import annotations

import asyncio

import pytest

from common import event_loop
from common.config import ConfigError


async def loop_class() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_the_default() -> None:
    assert event_loop.chosen({}) == "uvloop"
    assert event_loop.run(loop_class()).startswith("uvloop")


def test_asyncio_on_request() -> None:
    assert event_loop.chosen({"EVENT_LOOP": "asyncio"}) == "asyncio"
    assert event_loop.run(loop_class(), "asyncio").startswith("asyncio")


def test_an_unknown_loop_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="EVENT_LOOP must be one of uvloop, asyncio"):
        event_loop.chosen({"EVENT_LOOP": "trio"})
