"""One load-client process of bench h) (`python -m bench.paced_client`, started by
bench/paced_load.py through bench/load_clients.py): its share of the N sockets, one prompt
each, every frame's arrival time.

Job: `ws_url`, `auth_secret` (hex, "" with access control off), `sockets` ([thread, user]
pairs), `tokens`, `wait_s`. Ready once every socket is connected; on go it sends every prompt,
waits for every `[DONE]` (at most `wait_s`) and reports its Share. `cpu_s` is this process's
CPU time from go to the end: the client's own cost, reported beside the system's. A socket that
cannot connect fails the client; an answer that goes wrong is recorded, never raised.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench.credentials import Credentials
from bench.environment import raise_open_files_limit
from bench.load_clients import ready_then_go, serve
from bench.ws_load import DONE, ERROR, LOADING, close_all, connect_many, expected_text


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


@dataclass
class Share:
    """What one client saw: per answer its first token, its gaps, whole or why not. An answer
    whose first token never came counts in `first_token_s` as `wait_s` (all the bench waited:
    a lower bound, so a tail over such answers is never better than the truth) and in
    `no_first_token`."""

    first_token_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    whole: int = 0
    errors: list[str] = field(default_factory=list)
    last_done: float = 0.0
    cpu_s: float = 0.0
    no_first_token: int = 0


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


async def answer_all(
    sockets: list[aiohttp.ClientWebSocketResponse], tokens: int, wait_s: float
) -> list[Answer]:
    answers = [Answer() for _ in sockets]
    readers = [asyncio.ensure_future(follow(ws, a)) for ws, a in zip(sockets, answers, strict=True)]
    prompt = f"paced tokens={tokens}"
    for ws, answer in zip(sockets, answers, strict=True):
        answer.sent_at = time.monotonic()
        await ws.send_str(prompt)
    _, late = await asyncio.wait(readers, timeout=wait_s)
    for reader, answer in zip(readers, answers, strict=True):
        if reader in late:
            reader.cancel()
            overdue = f"no [DONE] within {wait_s:.0f} s"
            answer.error = f"{answer.error}, then {overdue}" if answer.error else overdue
    return answers


def share_of(answers: list[Answer], tokens: int, wait_s: float, cpu_s: float) -> Share:
    want = expected_text(tokens)
    return Share(
        first_token_s=[a.frames_at[0] - a.sent_at if a.frames_at else wait_s for a in answers],
        no_first_token=sum(not a.frames_at for a in answers),
        gaps_s=[g for a in answers if a.done_at for g in a.gaps()],
        whole=sum(a.whole(want) for a in answers),
        errors=[a.error or "text differs" for a in answers if not a.whole(want)],
        last_done=max((a.done_at for a in answers if a.done_at), default=0.0),
        cpu_s=cpu_s,
    )


async def run(job: dict[str, Any]) -> dict[str, Any]:
    credentials = Credentials.from_hex(job["auth_secret"])
    pairs = [(f"{job['ws_url']}/ws/{thread}", user) for thread, user in job["sockets"]]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        sockets = await connect_many(http, pairs, credentials)
        try:
            await ready_then_go()
            cpu = time.process_time()
            answers = await answer_all(sockets, job["tokens"], job["wait_s"])
            cpu = time.process_time() - cpu
            return asdict(share_of(answers, job["tokens"], job["wait_s"], cpu))
        finally:
            await close_all(sockets)


def main() -> None:
    raise_open_files_limit()
    serve(run)


if __name__ == "__main__":
    main()
