"""Load-client processes: the bench's sockets and requests split over one process per core, so
one Python event loop is not what a figure measures (bench/paced_client.py,
bench/rest_client.py).

Protocol, one JSON document each way: the parent writes the job as the first line of the
client's stdin; the client prepares (connects, claims its sessions) and prints `ready`; on the
line `go` it runs, prints its report as JSON and exits. The parent takes its CPU readings
between every client's `ready` and the `go`, so the measured window holds the load only. Times
are `time.monotonic()`, one clock for every process of the machine. A client that fails fails
the run with its stderr; every client still running is killed (by its own handle) on the way
out.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.environment import ROOT

READY_TIMEOUT_S = 300.0
PIPE_LIMIT = 1 << 26
"""A report can hold every sample a client took (e.g. N/clients x tokens gaps)."""


def client_count(units: int) -> int:
    """One process per core, at most one per unit of load (socket, session)."""
    return max(1, min(os.cpu_count() or 1, units))


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    return [list(items[k::parts]) for k in range(parts)]


class Client:
    """One load-client process (`python -m <module>`)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, module: str, job: dict[str, Any]) -> Client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=PIPE_LIMIT,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        await proc.stdin.drain()
        return cls(proc)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT_S)
        if line.strip() != b"ready":
            await self.stop()
            assert self.proc.stderr is not None
            err = (await self.proc.stderr.read()).decode()[-4000:]
            raise RuntimeError(f"a load client failed to get ready:\n{err}")

    async def go(self) -> dict[str, Any]:
        out, err = await self.proc.communicate(b"go\n")
        if self.proc.returncode != 0:
            raise RuntimeError(f"a load client failed:\n{err.decode()[-4000:]}")
        report: dict[str, Any] = json.loads(out)
        return report

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()  # our own child, by its handle
            await self.proc.wait()


async def run_clients(
    module: str, jobs: list[dict[str, Any]], before_go: Callable[[], None]
) -> list[dict[str, Any]]:
    """Starts a client per job, waits until all are ready, calls `before_go` (the caller's CPU
    readings and clock), lets them go and returns their reports."""
    clients: list[Client] = []
    try:
        for job in jobs:
            clients.append(await Client.start(module, job))
        await asyncio.gather(*(c.ready() for c in clients))
        before_go()
        return list(await asyncio.gather(*(c.go() for c in clients)))
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


def serve(prepare: Callable[[dict[str, Any]], Any]) -> None:
    """A client's main: read the job, run `prepare(job)` (an async function that gets ready,
    then awaits `go()` and returns its report), print the report."""
    job = json.loads(sys.stdin.readline())
    report = asyncio.run(prepare(job))
    json.dump(report, sys.stdout)
    sys.stdout.flush()


async def ready_then_go() -> None:
    """In a client: say ready, wait for the parent's go."""
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
