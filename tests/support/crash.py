"""Writes in flight when something is killed: concurrent writers, and a seeded random moment.

`Writers(ledger, append, sessions)` runs `count` tasks, each appending its own numbered writes
(unique, non-ASCII content and a client_message_id per write) back to back, spread over
`sessions`. A write that fails with a retryable error is sent again with the SAME
client_message_id until it is acknowledged (exactly-once: a retry of a write that landed returns
the original) or `write_deadline_s` passes; every acknowledgement goes to the ledger. `stop()`
lets each writer finish the write it is in, then end; any other error fails the test.

`KillMoment` draws the kill's delay from a seeded RNG and prints the seed (CRASH_SEED=<seed>
repeats a run); `kill_amid(writers, moment, kill)` kills once at least two writers are mid-call.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from durablechat.v1 import common_pb2, session_pb2
from tests.support.grpc_client import RETRYABLE, SessionClient
from tests.support.ledger import Ledger, Stored

Append = Callable[[str, str, str], Awaitable[int]]
"""(session, client_message_id, content) -> the acknowledged seq; raises on failure."""


class KillMoment:
    def __init__(self, name: str) -> None:
        self.seed = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 32))
        self.rng = random.Random(self.seed)
        print(f"{name}: kill moment seed {self.seed} (CRASH_SEED={self.seed} repeats it)")

    async def wait(self, low_s: float = 0.0, high_s: float = 0.3) -> float:
        """Waits a random delay in [low_s, high_s): when the kill lands, not synchronisation."""
        delay = self.rng.uniform(low_s, high_s)
        await asyncio.sleep(delay)
        return delay


class Writers:
    def __init__(
        self,
        ledger: Ledger,
        append: Append,
        sessions: Sequence[str],
        retryable: Callable[[BaseException], bool],
        *,
        count: int = 6,
        tag: str = "w",
        write_deadline_s: float = 20.0,
    ) -> None:
        self.ledger, self.append, self.sessions = ledger, append, list(sessions)
        self.retryable = retryable
        self.count, self.tag, self.write_deadline_s = count, tag, write_deadline_s
        self.in_call = 0
        """Writers inside an append call right now (not between calls or retries)."""
        self.retries = 0
        self.acks: list[tuple[float, float]] = []
        """(first attempt sent, acknowledged) of every write, time.monotonic(), in ack order."""
        self.killed_at = 0.0
        """When `kill_amid` killed (time.monotonic(), after the process had exited)."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write(i)) for i in range(self.count)]

    async def stop(self) -> None:
        """Each writer finishes (acknowledged) the write it is in; raises a writer's error."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def stall_after_kill(self) -> float:
        """Seconds from the kill to the first acknowledgement of a write first sent after it
        (a reply already on its way when the process died does not count)."""
        return min(acked for sent, acked in self.acks if sent > self.killed_at) - self.killed_at

    async def cancel(self) -> None:
        """For a test's `finally`: ends writers still running, without waiting for acks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def acked(self, at_least: int, within: float = 30.0) -> None:
        """Waits until the ledger holds `at_least` acknowledged writes in all; a writer's error
        ends the wait at once."""
        await self._until(lambda: self.ledger.count() >= at_least, within, f"{at_least} acks")

    async def mid_call(self, writers: int = 2, within: float = 10.0) -> int:
        """Waits until at least `writers` writers are inside a call; returns how many are."""
        await self._until(lambda: self.in_call >= writers, within, f"{writers} mid-call")
        return self.in_call

    async def _until(self, done: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not done():
            for task in self._tasks:
                if task.done():
                    task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"writers: not {what} within {within} s")
            await asyncio.sleep(0.001)

    async def _write(self, index: int) -> None:
        k = 0
        while not self._stop.is_set():
            session = self.sessions[(index + k) % len(self.sessions)]
            cid = f"{self.tag}{index}-{k}"
            content = f"{cid} écrit ✓ {random.getrandbits(32):08x}"
            sent = time.monotonic()
            seq = await self._until_acked(session, cid, content)
            self.ledger.record(session, cid, content, seq)
            self.acks.append((sent, time.monotonic()))
            k += 1

    async def _until_acked(self, session: str, cid: str, content: str) -> int:
        deadline = time.monotonic() + self.write_deadline_s
        while True:
            self.in_call += 1
            try:
                return await self.append(session, cid, content)
            except Exception as exc:
                if not self.retryable(exc) or time.monotonic() > deadline:
                    raise
                self.retries += 1
            finally:
                self.in_call -= 1
            await asyncio.sleep(0.02)


async def kill_amid(
    writers: Writers, moment: KillMoment, kill: Callable[[], None], after_acked: int = 20
) -> int:
    """Once `after_acked` writes are acknowledged, after a random delay, kills while at least
    two writers are mid-call; returns how many were."""
    await writers.acked(after_acked)
    await moment.wait()
    in_flight = await writers.mid_call(2)
    kill()
    writers.killed_at = time.monotonic()
    print(f"killed with {in_flight} writers mid-call, {writers.ledger.count()} writes acknowledged")
    return in_flight


async def kill_and_restart(
    writers: Writers, name: str, kill: Callable[[], None], restart: Callable[[], object]
) -> None:
    """The usual crash run: the writers start; `kill` lands amid them at a random moment
    (`kill_amid`); `restart` runs (in a thread: the writers go on meanwhile); once 20 more writes
    are acknowledged the writers stop. On failure they are cancelled."""
    try:
        writers.start()
        await kill_amid(writers, KillMoment(name), kill)
        await asyncio.to_thread(restart)
        await writers.acked(writers.ledger.count() + 20)
        await writers.stop()
    finally:
        await writers.cancel()


def grpc_retryable(exc: BaseException) -> bool:
    """UNAVAILABLE and DEADLINE_EXCEEDED: the write may or may not have landed; send it again."""
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in RETRYABLE


def grpc_append(client: Callable[[], SessionClient]) -> Append:
    """Appends through `client()` (called per write: a test may swap the client)."""

    async def append(session: str, cid: str, content: str) -> int:
        reply = await client().append(session, content, client_id=cid)
        return int(reply.message.seq)

    return append


def grpc_append_as(stub: Any, metadata: Sequence[tuple[str, str]]) -> Append:
    """Appends through a SessionService stub with the caller's `metadata` (a bearer token)."""

    async def append(session: str, cid: str, content: str) -> int:
        request = session_pb2.AppendMessageRequest(
            session_id=session, role=common_pb2.ROLE_USER, content=content, client_message_id=cid
        )
        reply = await stub.AppendMessage(request, metadata=metadata, timeout=10)
        return int(reply.message.seq)

    return append


async def history(client: SessionClient, session: str) -> list[Stored]:
    """The session's stored messages, every page."""
    return [Stored.of(m) for m in await client.list_all(session)]


async def assert_appends_kept(client: SessionClient, ledger: Ledger) -> int:
    """For sessions only `Writers` wrote to: every acknowledged write is stored once, byte for
    byte, at its seq; seqs run on with no gap; nothing is stored that was not acknowledged
    (every writer retried its write until it was). Returns the writes checked."""
    for session in ledger.writes:
        stored = await history(client, session)
        verdict = ledger.assert_kept(session, stored)
        assert not verdict.unrecorded, (
            f"{session}: stored, never acknowledged: {verdict.unrecorded}"
        )
        first = stored[0].seq if stored else 1  # with AUTH_MODE=jwt the room's creation is 1
        assert [m.seq for m in stored] == list(range(first, first + len(stored))), f"{session}: gap"
    return ledger.count()
