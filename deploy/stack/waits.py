"""Waiting for something to become true: polling with a deadline, sync and asyncio, and a GET
that returns error statuses instead of raising."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any


class _Wait:
    """One wait: its deadline, and the answer once there is one."""

    def __init__(self, fn: Callable[[], Any], timeout: float) -> None:
        self.fn = fn
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.result: Any = None

    def done(self, result: Any, error: BaseException | None) -> bool:
        """Whether `result` is the answer; the error (or the falsy result) once time is up."""
        if error is None and result:
            self.result = result
            return True
        if time.monotonic() > self.deadline:
            why = error or AssertionError(f"{self.fn} stayed falsy: {result!r}")
            raise AssertionError(f"not true within {self.timeout}s") from why
        return False


# An attempt's error is caught in these, not in the waiting loop: a traceback that held the
# loop's frame, which holds the error, would be a cycle only the garbage collector frees, and an
# object freed that late (an HTTP error's socket) warns in whichever test runs then.
def _tried(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


async def _tried_async(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, BaseException | None]:
    try:
        return await fn(), None
    except Exception as exc:
        return None, exc


def eventually(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Calls fn until it returns a truthy value without raising; the last error if it never does."""
    wait = _Wait(fn, timeout)
    while not wait.done(*_tried(fn)):
        time.sleep(interval)
    return wait.result


async def async_eventually(
    fn: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.02
) -> Any:
    """The asyncio form of `eventually`."""
    wait = _Wait(fn, within)
    while True:
        if wait.done(*await _tried_async(fn)):
            return wait.result
        await asyncio.sleep(interval)


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """GET url: its status and body, error statuses included. An error's response is closed here:
    an HTTPError left to the garbage collector warns of its open socket (ResourceWarning, an
    error under our filterwarnings) in whatever test happens to run then."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as failed:
        with failed:
            return failed.code, failed.read()
