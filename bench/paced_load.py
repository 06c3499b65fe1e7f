"""One run of the paced-answers load (bench/paced.py): N sockets on N threads, one prompt each,
every frame's arrival time kept; what each of our processes and the load client spent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench.environment import load_average
from bench.stats import percentile
from bench.target import Target
from bench.ws_load import DONE, ERROR, LOADING, close_all, connect_many, expected_text

ROLES = ("ai", "session", "gateway", "redis", "model")
SLACK_S = 60.0
"""How long past the answer's own pace (tokens x delay) a run waits for every [DONE]; an
answer still open then is counted incomplete, so a lost answer cannot hang the bench."""


@dataclass
class Answer:
    """One socket's answer: when its prompt went out, when each text frame and [DONE] came."""

    sent_at: float = 0.0
    frames_at: list[float] = field(default_factory=list)
    done_at: float = 0.0
    parts: list[str] = field(default_factory=list)
    error: str = ""
    loading: bool = False
    """[LOADING] came: the prompt was taken and its answer started."""

    def whole(self, want: str) -> bool:
        return not self.error and bool(self.done_at) and "".join(self.parts) == want

    def gaps(self) -> list[float]:
        """Time between consecutive frames, from the first text frame to [DONE]."""
        times = [*self.frames_at, self.done_at]
        return [b - a for a, b in itertools.pairwise(times)]


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

    @property
    def first_token_p99_ms(self) -> float:
        return percentile(self.first_token_s, 99) * 1000

    @property
    def gap_p99_ms(self) -> float:
        return percentile(self.gaps_s, 99) * 1000


async def follow(ws: aiohttp.ClientWebSocketResponse, answer: Answer) -> None:
    """Reads frames until [DONE], stamping each text frame as it arrives."""
    while True:
        frame = await ws.receive()
        now = time.monotonic()
        if frame.type != aiohttp.WSMsgType.TEXT:
            answer.error = f"socket ended: {frame.type.name}"
            return
        data = frame.data
        if data == DONE:
            answer.done_at = now
            return
        if data == LOADING:
            answer.loading = True
            continue
        if data.startswith(ERROR):
            answer.error = data
            if not answer.loading:  # the prompt itself failed: no answer, no [DONE] follows
                return
            continue
        answer.frames_at.append(now)
        answer.parts.append(data)


def cpu_seconds(target: Target) -> dict[str, float]:
    """CPU time so far of each role with known PIDs, and of this process (the load client)."""
    found = {role: target.cpu_seconds(role) for role in ROLES}
    seconds = {role: s for role, s in found.items() if s is not None}
    seconds["client"] = time.process_time()
    return seconds


async def one_run(
    target: Target, http: aiohttp.ClientSession, n: int, tokens: int, tag: str, pace_s: float
) -> RunResult:
    """Connects N sockets (one thread each), sends N prompts at once, waits for every [DONE]."""
    urls = [f"{target.ws_url}/ws/{tag}-{i}?user=bench" for i in range(n)]
    sockets = await connect_many(http, urls)
    answers = [Answer() for _ in sockets]
    prompt = f"paced tokens={tokens}"
    try:
        readers = [
            asyncio.ensure_future(follow(ws, a)) for ws, a in zip(sockets, answers, strict=True)
        ]
        load = load_average()
        before = cpu_seconds(target)
        started = time.monotonic()
        for ws, answer in zip(sockets, answers, strict=True):
            answer.sent_at = time.monotonic()
            await ws.send_str(prompt)
        _, late = await asyncio.wait(readers, timeout=pace_s + SLACK_S)
        after = cpu_seconds(target)
        for reader, answer in zip(readers, answers, strict=True):
            if reader in late:
                reader.cancel()
                overdue = f"no [DONE] within {pace_s + SLACK_S:.0f} s"
                answer.error = f"{answer.error}, then {overdue}" if answer.error else overdue
    finally:
        await close_all(sockets)
    want = expected_text(tokens)
    whole = [a for a in answers if a.whole(want)]
    last_done = max((a.done_at for a in answers if a.done_at), default=started)
    wall = last_done - started
    streamed = n * tokens
    return RunResult(
        n=n,
        first_token_s=[a.frames_at[0] - a.sent_at for a in answers if a.frames_at],
        gaps_s=[g for a in answers for g in a.gaps() if a.done_at],
        whole=len(whole),
        wall_s=wall,
        tokens_per_s=len(whole) * tokens / wall if wall > 0 else 0.0,
        cpu_us_per_token={
            role: (after[role] - before[role]) / streamed * 1e6 for role in before if role in after
        },
        load_before=load,
        errors=dict(Counter(a.error or "text differs" for a in answers if not a.whole(want))),
    )
