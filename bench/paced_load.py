"""One run of the paced-answers load (bench/paced.py): N sockets on N threads, one prompt each,
split over load-client processes (bench/paced_client.py), so that at N = 1,000 one Python
event loop reading every frame is not what the figures measure.

A run starts `clients` processes (at most one per core, at most one per socket), gives each
its share of the sockets and waits until all are connected; only then are CPU times taken and
every client told to go, so the measured window holds answering only. The clients' own CPU
over that window is summed and reported as the load client's ("client"), beside the system's.
A client that fails (cannot connect) fails the run with its stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.environment import load_average
from bench.paced_client import Share
from bench.stats import TAIL_Q, percentile, tail_name
from bench.target import ROOT, Target

SLACK_S = 60.0
"""How long past the answer's own pace (tokens x delay) a run waits for every [DONE]; an
answer still open then is counted incomplete, so a lost answer cannot hang the bench."""
READY_TIMEOUT_S = 300.0
PIPE_LIMIT = 1 << 26
"""A client's report holds every gap it saw (N/clients x tokens floats)."""


@dataclass(frozen=True)
class RunResult:
    n: int
    first_token_s: list[float]
    gaps_s: list[float]
    whole: int
    wall_s: float
    tokens_per_s: float
    cpu_us_per_token: dict[str, float]
    load_before: float
    errors: dict[str, int]
    """Why answers were not whole: each distinct reason and how many answers it stopped."""
    clients: int = 1
    no_first_token: int = 0
    """Answers whose first token never came (counted at the wait in `first_token_s`)."""

    def tail_ms(self, what: str) -> tuple[str, float]:
        """This run's own tail of "first_token" or "gap": named by its sample count."""
        samples = self.first_token_s if what == "first_token" else self.gaps_s
        name = tail_name(len(samples))
        return name, percentile(samples, TAIL_Q[name]) * 1000


def client_count(n: int) -> int:
    return max(1, min(os.cpu_count() or 1, n))


class Client:
    """One load-client process and its share of the sockets."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, job: dict[str, Any]) -> Client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.paced_client",
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
            raise RuntimeError(f"a load client failed to connect:\n{await self._stderr()}")

    async def go(self) -> Share:
        out, err = await self.proc.communicate(b"go\n")
        if self.proc.returncode != 0:
            raise RuntimeError(f"a load client failed:\n{err.decode()[-4000:]}")
        return Share(**json.loads(out))

    async def _stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.returncode is None:
            self.proc.kill()  # our own child, by its handle
        await self.proc.wait()
        return (await self.proc.stderr.read()).decode()[-4000:]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def one_run(target: Target, n: int, tokens: int, tag: str, pace_s: float) -> RunResult:
    """Connects N sockets (one thread and user each), sends N prompts at once, waits for every
    [DONE] (at most pace_s + SLACK_S)."""
    count = client_count(n)
    sockets = [(f"{tag}-{i}", f"bench-{i}") for i in range(n)]
    base = {
        "ws_url": target.ws_url,
        "auth_secret": target.credentials.hex(),
        "tokens": tokens,
        "wait_s": pace_s + SLACK_S,
    }
    clients: list[Client] = []
    try:
        for k in range(count):
            clients.append(await Client.start({**base, "sockets": sockets[k::count]}))
        await asyncio.gather(*(c.ready() for c in clients))
        load = load_average()
        before = target.cpu_all()
        own_cpu = time.process_time()
        started = time.monotonic()
        shares = await asyncio.gather(*(c.go() for c in clients))
        cpu = target.cpu_us_per(before, n * tokens, "token")
        own_cpu = time.process_time() - own_cpu
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
    last_done = max((s.last_done for s in shares if s.last_done), default=started)
    wall = last_done - started
    whole = sum(s.whole for s in shares)
    client_s = own_cpu + sum(s.cpu_s for s in shares)
    prefix = "cpu_us_per_token_"
    per_token = {k.removeprefix(prefix): v for k, v in cpu.items() if k != f"{prefix}ours"}
    return RunResult(
        n=n,
        first_token_s=[t for s in shares for t in s.first_token_s],
        gaps_s=[g for s in shares for g in s.gaps_s],
        whole=whole,
        wall_s=wall,
        tokens_per_s=whole * tokens / wall if wall > 0 else 0.0,
        cpu_us_per_token={**per_token, "client": client_s / (n * tokens) * 1e6},
        load_before=load,
        errors=dict(Counter(e for s in shares for e in s.errors)),
        clients=count,
        no_first_token=sum(s.no_first_token for s in shares),
    )
