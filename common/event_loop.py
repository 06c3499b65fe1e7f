"""The event loop every service runs on: uvloop (libuv) by default, the standard asyncio loop
with EVENT_LOOP=asyncio.

uvloop does the same work as asyncio's own loop (sockets, timers, callbacks) in C, which lowers
the CPU each streamed token costs in every process (docs/bench/profiles.md has the before/after).
Behaviour is the same on both loops; the setting exists to compare them and as a way out should a
library misbehave on uvloop. An unknown value is a configuration error, not a silent fallback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from common.config import ConfigError

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")


def chosen(environ: dict[str, str] | None = None) -> str:
    value = (environ if environ is not None else dict(os.environ)).get("EVENT_LOOP", "uvloop")
    if value not in CHOICES:
        raise ConfigError(f"EVENT_LOOP must be one of {', '.join(CHOICES)}, not {value!r}")
    return value


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """Runs `main` to completion on the chosen loop (EVENT_LOOP unless `loop` is given)."""
    if (loop or chosen()) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
