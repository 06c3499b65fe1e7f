"""`make bench-cluster`: what a crash of a session pod costs users, measured on real processes.

Starts its own stack (redis-server with AOF and fsync always, the dev model, the AI service,
three session pods, the gateway) on free ports and keeps a load up through the gateway: CHATS
chat threads over the WebSocket (`tokens=1` prompts back to back) and WRITERS REST writers
(appends with client message ids; bench/cluster_load.py). Then, KILLS times, at a random moment
(seeded: the seed is printed), it `kill -9`s a random session pod with writes in flight, waits
until every client has completed a write again, restarts the pod and lets the ring hand its
sessions back.

Stall: for each client whose thread the killed pod owned, the time from the kill to the client's
next acknowledged write (its next `[DONE]` or append reply). It includes that write's own round
trip, so the table also gives a client's usual wait between two writes away from any kill. p50
and max are over all such (kill, client) pairs. Hand-back: the longest wait between two
acknowledged writes of those clients while the restarted pod takes its sessions back (a
deploy's cost). After the run every
acknowledged write is checked by content (stored exactly once, at its seq) through the gateway.
A client still waiting past DEADLINE_S after a kill fails the run: nothing retries forever.
Prints a table, writes bench/results/cluster.json and the README block between
`<!-- bench-cluster:begin -->` and `<!-- bench-cluster:end -->`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.cluster_load import Chatter, Client, Verdict, Writer, check_chatter, check_writer, stored
from bench.environment import git_sha, machine
from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench-cluster:begin -->", "<!-- bench-cluster:end -->"
PODS = ["pod-a", "pod-b", "pod-c"]
CHATS = 30
WRITERS = 6
DEADLINE_S = 15.0
HAND_BACK_S = 3.0
"""How long after a restarted pod rejoined the hand-back is watched."""


async def _until(condition: Callable[[], bool], deadline: float) -> bool:
    """Polls `condition()` every 10 ms until true or the deadline; False at the deadline."""
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


@dataclass
class Round:
    pod: str
    stalls_s: list[float]
    hand_back_gap_s: float
    disturbed: tuple[float, float]
    """From the kill to the end of the hand-back watch."""


async def one_kill(stack: Stack, rng: random.Random, clients: Sequence[Client]) -> Round:
    ring = HashRing(PODS)
    await asyncio.sleep(rng.uniform(0.5, 1.5))
    victim = rng.choice(PODS)
    hit = [c for c in clients if ring.owner(c.sid) == victim]
    stack.pods[victim].kill9()
    killed = time.monotonic()
    resumed = await _until(
        lambda: all(c.next_after(killed) is not None for c in clients), killed + DEADLINE_S
    )
    if not resumed:
        stuck = [c.sid for c in clients if c.next_after(killed) is None]
        raise RuntimeError(f"{len(stuck)} clients made no progress {DEADLINE_S} s after the kill")
    stalls = [(c.next_after(killed) or 0.0) - killed for c in hit]
    await asyncio.to_thread(stack.start_pod, victim)
    await asyncio.to_thread(stack.wait_members)
    back = time.monotonic()
    await asyncio.sleep(HAND_BACK_S)
    gaps = [
        b - a
        for c in hit
        for a, b in zip(c.done, c.done[1:], strict=False)
        if b > back and a < back + HAND_BACK_S
    ]
    return Round(victim, stalls, max(gaps, default=0.0), (killed, back + HAND_BACK_S))


async def run(kills: int, seed: int, workdir: Path) -> dict[str, object]:
    rng = random.Random(seed)
    spec = StackSpec(pods=tuple(PODS), wait_members=True)
    with started(workdir, spec) as stack:
        base = stack.gateway_url
        chatters = [Chatter(f"chat-{seed}-{i}") for i in range(CHATS)]
        writers = [Writer(f"write-{seed}-{i}") for i in range(WRITERS)]
        clients: list[Chatter | Writer] = [*chatters, *writers]
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=DEADLINE_S)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started_at = time.monotonic()
        async with aiohttp.ClientSession(timeout=timeout) as http:
            load = [asyncio.create_task(c.run(http, base, stop)) for c in clients]
            try:
                await _until(lambda: all(c.done for c in clients), time.monotonic() + 30)
                rounds = [await one_kill(stack, rng, clients) for _ in range(kills)]
            finally:
                stop.set()
                await asyncio.wait(load, timeout=DEADLINE_S)
            elapsed = time.monotonic() - started_at
            after = resource.getrusage(resource.RUSAGE_SELF)
            verdict = Verdict()
            for chatter in chatters:
                verdict.add(check_chatter(chatter, await stored(http, base, chatter.sid)))
            for writer in writers:
                verdict.add(check_writer(writer, await stored(http, base, writer.sid)))
    stalls = sorted(s * 1000 for r in rounds for s in r.stalls_s)
    worst = [max(r.stalls_s, default=0.0) * 1000 for r in rounds]
    hand_back = [r.hand_back_gap_s * 1000 for r in rounds]
    calm = [
        b - a
        for c in clients
        for a, b in itertools.pairwise(c.done)
        if not any(a < end and b > start for start, end in (r.disturbed for r in rounds))
    ]
    client_cpu = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    return {
        "git_sha": git_sha(),
        "machine": machine(),
        "seed": seed,
        "settings": {"pods": 3, "chats": CHATS, "rest_writers": WRITERS, "lease_ttl_ms": 2000},
        "kills": len(rounds),
        "killed": [r.pod for r in rounds],
        "stalled_clients": len(stalls),
        "stall_ms_p50": round(statistics.median(stalls), 1) if stalls else 0.0,
        "stall_ms_max": round(max(stalls), 1) if stalls else 0.0,
        "calm_wait_ms_p50": round(statistics.median(calm) * 1000, 1) if calm else 0.0,
        "worst_stall_per_kill_ms": [round(w, 1) for w in worst],
        "hand_back_gap_ms_max": round(max(hand_back, default=0.0), 1),
        "acknowledged_writes": verdict.acknowledged,
        "lost_by_content": verdict.lost,
        "duplicated": verdict.duplicated,
        "misplaced": verdict.misplaced,
        "client_errors": sum(c.errors for c in clients),
        "load_client_cpu_share": round(client_cpu / elapsed, 3),
        "keys_moved_on_join_3_to_4": round(moved_share(PODS, [*PODS, "pod-d"]), 4),
        "keys_moved_on_leave_3_to_2": round(moved_share(PODS, PODS[:2]), 4),
    }


async def main(kills: int, seed: int = 0) -> dict[str, object]:
    """For `make bench` (scenario f): one run in a directory of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        return await run(kills, seed or int(time.time()) % 100_000, Path(workdir))


def moved_share(members: list[str], changed: list[str], keys: int = 20_000) -> float:
    before, after = HashRing(members), HashRing(changed)
    ids = [f"session-{i}" for i in range(keys)]
    return sum(before.owner(k) != after.owner(k) for k in ids) / keys


def table(report: dict[str, object]) -> str:
    r = report
    stall = f"{r['stall_ms_p50']} ms / {r['stall_ms_max']} ms (n = {r['stalled_clients']})"
    lost = f"{r['lost_by_content']} / {r['duplicated']} / {r['misplaced']}"
    calm = f"{r['calm_wait_ms_p50']} ms"
    hand_back = f"{r['hand_back_gap_ms_max']} ms"
    moved = f"{r['keys_moved_on_join_3_to_4']:.1%} / {r['keys_moved_on_leave_3_to_2']:.1%}"
    rows = [
        ("kills (`kill -9` of a random session pod, writes in flight)", r["kills"]),
        ("stall after a kill, p50 / max (each client the killed pod served)", stall),
        ("for comparison: a client's wait between two writes, no kill near, p50", calm),
        ("longest wait while a restarted pod takes its sessions back", hand_back),
        ("acknowledged writes (WebSocket prompts + REST appends)", r["acknowledged_writes"]),
        ("lost by content / duplicated / not at their seq", lost),
        ("failed client attempts (retried)", r["client_errors"]),
        ("sessions moved on join 3 → 4 / leave 3 → 2", moved),
        (
            "load client's CPU (share of one core; it shares the machine)",
            r["load_client_cpu_share"],
        ),
    ]
    head = (
        f"`make bench-cluster` at {r['git_sha']} (seed {r['seed']}; {r['machine']}; 3 pods, "
        f"{CHATS} WebSocket chats, {WRITERS} REST writers, lease TTL 2 s):\n\n"
    )
    return head + "| measure | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


def rewrite_readme(block: str) -> None:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:start] + "\n" + block + text[end:])


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main(args.kills, args.seed))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(report, indent=2) + "\n")
    block = table(report)
    print(block)
    print(f"written to {RESULTS / 'cluster.json'}")
    if not args.no_readme:
        rewrite_readme(block)
        print(f"README table rewritten between {BEGIN} and {END}")
    failed = report["lost_by_content"] or report["duplicated"] or report["misplaced"]
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    cli()
