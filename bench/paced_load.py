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

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.environment import load_average
from bench.load_clients import client_count, run_clients, split
from bench.paced_client import Share
from bench.stats import TAIL_Q, percentile, tail_name
from bench.target import Target

SLACK_S = 60.0
"""How long past the answer's own pace (tokens x delay) a run waits for every [DONE]; an
answer still open then is counted incomplete, so a lost answer cannot hang the bench."""


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
    client_core_share: float = 0.0
    """The busiest load-client process's CPU over the run as a share of one core (near 1.0:
    the client, not the system, may be what the figures show)."""

    def tail_ms(self, what: str) -> tuple[str, float]:
        """This run's own tail of "first_token" or "gap": named by its sample count."""
        samples = self.first_token_s if what == "first_token" else self.gaps_s
        name = tail_name(len(samples))
        return name, percentile(samples, TAIL_Q[name]) * 1000


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
    readings: dict[str, Any] = {}

    def before_go() -> None:
        readings["load"] = load_average()
        readings["cpu"] = target.cpu_all()
        readings["own"] = time.process_time()
        readings["started"] = time.monotonic()

    jobs = [{**base, "sockets": part} for part in split(sockets, count)]
    reports = await run_clients("bench.paced_client", jobs, before_go)
    cpu = target.cpu_us_per(readings["cpu"], n * tokens, "token")
    own_cpu = time.process_time() - readings["own"]
    shares = [Share(**r) for r in reports]
    started, load = readings["started"], readings["load"]
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
        client_core_share=max(s.cpu_s for s in shares) / wall if wall > 0 else 0.0,
    )
