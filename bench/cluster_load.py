"""The load `make bench-cluster` keeps up while it kills pods: chat threads over the WebSocket and
REST writers, both through the gateway as users would, each recording what was acknowledged.

- A `Chatter` sends `tokens=1` prompts back to back on one thread's socket and waits for each
  `[DONE]`; a prompt is acknowledged when its answer ended without `[ERROR]`. A socket that
  breaks is opened again (the gateway outlives the session pods here).
- A `Writer` appends messages over REST with a client message id, retrying a retryable failure
  with the same id until the run's deadline; an append is acknowledged by its 200/201 reply,
  which names its seq. Together these are the ledger: (client message id, content, seq).
- `check_*` read the stored history back through the gateway and count, by content, each
  acknowledged write stored exactly once (and at its seq), lost, or stored twice.
Every wait is bounded by the run's deadline: nothing retries forever.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.ws_load import DONE, ERROR, LOADING, expected_text

RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
ANSWER = expected_text(1)
"""The dev model's answer to `tokens=1`."""


@dataclass
class Client:
    """Completions of one client: the instants its acknowledged writes came back."""

    sid: str
    done: list[float] = field(default_factory=list)
    errors: int = 0

    def next_after(self, instant: float) -> float | None:
        return next((t for t in self.done if t > instant), None)


@dataclass
class Chatter(Client):
    prompts: list[str] = field(default_factory=list)
    """Acknowledged prompts, in order."""

    async def run(self, http: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> None:
        k = 0
        url = f"{base.replace('http', 'ws', 1)}/ws/{self.sid}?user=bench"
        while not stop.is_set():
            try:
                async with http.ws_connect(url, heartbeat=None) as ws:
                    while not stop.is_set():
                        prompt = f"tokens=1 {self.sid} #{k}"
                        k += 1
                        await ws.send_str(prompt)
                        if await self._answer(ws):
                            self.prompts.append(prompt)
                            self.done.append(time.monotonic())
                        else:
                            self.errors += 1
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                self.errors += 1
                await asyncio.sleep(0.05)

    @staticmethod
    async def _answer(ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Reads frames until [DONE]: True when the answer came whole, without [ERROR]."""
        text: list[str] = []
        failed = False
        while True:
            frame = await ws.receive(timeout=10)
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket ended: {frame.type.name}")
            if frame.data == DONE:
                return not failed and "".join(text) == ANSWER
            if frame.data.startswith(ERROR):
                failed = True
            elif frame.data != LOADING:
                text.append(frame.data)


@dataclass
class Writer(Client):
    acked: list[tuple[str, str, int]] = field(default_factory=list)
    """(client message id, content, seq) of each acknowledged append."""

    async def run(self, http: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> None:
        k = 0
        url = f"{base}/api/chat/session/{self.sid}/messages"
        while not stop.is_set():
            cid = f"{self.sid}-{k}"
            body = {"role": "user", "content": f"write {k} of {self.sid} ✓", "clientMessageId": cid}
            k += 1
            while not stop.is_set():
                try:
                    async with http.post(url, json=body) as reply:
                        if reply.status in (200, 201):
                            seq = int((await reply.json())["seq"])
                            self.acked.append((cid, body["content"], seq))
                            self.done.append(time.monotonic())
                            break
                        if reply.status not in RETRY_STATUSES:
                            raise RuntimeError(f"append refused: {reply.status}")
                except (TimeoutError, aiohttp.ClientError):
                    pass
                self.errors += 1
                await asyncio.sleep(0.02)


async def stored(http: aiohttp.ClientSession, base: str, sid: str) -> list[dict[str, Any]]:
    """Every message of the session's active branch, paged through the gateway."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        url = f"{base}/api/chat/session/{sid}/messages?after={after}&limit=1000"
        async with http.get(url) as reply:
            reply.raise_for_status()
            page = await reply.json()
        out += page["messages"]
        if not page["hasMore"] or not page["messages"]:
            return out
        after = page["messages"][-1]["seq"]


@dataclass
class Verdict:
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    misplaced: int = 0
    """Stored once, but not at the seq its acknowledgement named."""

    def add(self, other: Verdict) -> None:
        self.acknowledged += other.acknowledged
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.misplaced += other.misplaced


def check_writer(writer: Writer, messages: list[dict[str, Any]]) -> Verdict:
    verdict = Verdict(acknowledged=len(writer.acked))
    contents = [m["content"] for m in messages]
    at_seq = {m["seq"]: m["content"] for m in messages}
    for _, content, seq in writer.acked:
        copies = contents.count(content)
        verdict.lost += copies == 0
        verdict.duplicated += copies > 1
        verdict.misplaced += copies == 1 and at_seq.get(seq) != content
    return verdict


def check_chatter(chatter: Chatter, messages: list[dict[str, Any]]) -> Verdict:
    """Each acknowledged prompt is stored once, followed by its answer, in the order sent."""
    verdict = Verdict(acknowledged=len(chatter.prompts))
    users = [(i, m["content"]) for i, m in enumerate(messages) if m["role"] == "user"]
    positions = []
    for prompt in chatter.prompts:
        found = [i for i, content in users if content == prompt]
        verdict.lost += not found
        verdict.duplicated += len(found) > 1
        if len(found) == 1:
            i = found[0]
            answered = i + 1 < len(messages) and messages[i + 1]["content"] == ANSWER
            verdict.misplaced += not answered
            positions.append(i)
    verdict.misplaced += sum(a > b for a, b in itertools.pairwise(positions))
    return verdict
