"""Activation of a long thread: time and pod memory, from the whole log ("before") and from a
snapshot and the log's tail ("after", log/snapshot.py).

`main(answers=1000, runs=7)` starts Redis and one session service (AUTH_MODE=off) on free ports
in a temporary directory and writes a thread of `answers` answered prompts into Redis as a pod
would have (three log entries each: the prompt, the answer's start, its end with the text).
For each mode it starts a fresh session service and activates the thread `runs` times: each run
waits until the session is passivated (its lease released, SESSION_IDLE_MS), then times one
GetSession, which activates it. "before" deletes the snapshot key first, so activation reads the
whole log (what every activation did before snapshots); "after" leaves the snapshot the last
passivation stored. The first run of each mode is a warm-up and not counted. Memory: the
service's RSS before the first activation and its peak (VmHWM) after the last one.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from bench.stats import percentiles_ms
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import session_pb2, session_pb2_grpc
from session_service.log import events as ev
from session_service.log import snapshot
from session_service.store.keys import lease_key, meta_key, snapshot_key
from session_service.store.sessions import Held, Store

SESSION = "bench-long-thread"
ANSWER_WORDS = 120
"""Words per stored answer (about 700 bytes): a modest chat answer."""
IDLE_MS = 300
"""The service's idle timeout: how soon a run's session is passivated for the next one."""
WRITE_CHUNK = 30
"""Log entries per append while writing the thread (ten answered prompts)."""


async def write_thread(redis_url: str, session_id: str, answers: int) -> int:
    """Writes `answers` answered prompts into the session's log as an earlier pod would have
    (taking and releasing its lease); returns the log's length."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = Store(client)
        loaded = await store.activate(session_id, "bench-writer", 30_000, ev.now_ms())
        assert not isinstance(loaded, Held), "the session's lease is held"
        seq = loaded.base + len(loaded.entries)
        text = " ".join(f"word{i}" for i in range(ANSWER_WORDS))
        entries: list[bytes] = []
        for i in range(answers):
            ts = ev.now_ms()
            prompt = seq + len(entries) + 1
            entries.append(ev.encode_message("user", f"question {i}?", "bench", ts, f"q{i}"))
            entries.append(ev.encode_answer_start(prompt, ts))
            entries.append(ev.encode_answer_end(prompt + 1, text, ev.COMPLETED, "", ts, (9, 99, 0)))
            if len(entries) >= WRITE_CHUNK or i == answers - 1:
                await store.append(session_id, loaded.epoch, ts, entries)
                seq += len(entries)
                entries = []
        await store.release(session_id, "bench-writer", loaded.epoch, ev.now_ms())
        return seq
    finally:
        await client.aclose()


def _memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def _activations(stack: Stack, runs: int, whole_log: bool) -> dict[str, Any]:
    """Starts a fresh session service and times `runs` activations (plus a warm-up)."""
    proc = stack.start_session(SESSION_IDLE_MS=str(IDLE_MS))
    assert stack.redis is not None and proc.proc is not None
    pid = proc.proc.pid
    before_kb = _memory_kb(pid)["VmRSS"]
    sync = stack.redis.client()
    samples: list[float] = []
    channel = grpc.aio.insecure_channel(stack.session_addr)
    stub = session_pb2_grpc.SessionServiceStub(channel)
    try:
        for run in range(runs + 1):
            eventually(lambda: not sync.exists(lease_key(SESSION)), timeout=30)
            if whole_log:
                sync.delete(snapshot_key(SESSION))
            started = time.perf_counter()
            reply = await stub.GetSession(
                session_pb2.GetSessionRequest(session_id=SESSION), timeout=30
            )
            if run:  # the first is a warm-up
                samples.append(time.perf_counter() - started)
        after = _memory_kb(pid)
        eventually(lambda: not sync.exists(lease_key(SESSION)), timeout=30)  # passivated
        return {
            **percentiles_ms("activation", samples),
            "messages": reply.session.message_count,
            "pod_rss_before_kb": before_kb,
            "pod_rss_after_kb": after["VmRSS"],
            "pod_rss_peak_kb": after["VmHWM"],
        }
    finally:
        await channel.close()
        sync.close()
        proc.stop()


async def measure(workdir: Path, answers: int, runs: int) -> dict[str, Any]:
    stack = Stack(workdir)
    try:
        stack.start_redis()
        length = await write_thread(stack.redis_url, SESSION, answers)
        before = await _activations(stack, runs, whole_log=True)
        # The last whole-log activation's passivation stored a snapshot.
        assert stack.redis is not None
        with stack.redis.client() as sync:
            assert sync.exists(snapshot_key(SESSION)), "no snapshot was stored"
            sizes = {
                "log_bytes": int(sync.hget(meta_key(SESSION), "lb") or 0),
                "snapshot_bytes": sync.hstrlen(snapshot_key(SESSION), "body"),
                "window_entries": snapshot.WINDOW_EVENTS,
            }
        after = await _activations(stack, runs, whole_log=False)
        return {
            "answers": answers,
            "log_entries": length,
            **sizes,
            "before": before,
            "after": after,
        }
    finally:
        stack.close()


def main(answers: int = 1000, runs: int = 7) -> dict[str, Any]:
    """Activation p50/p99/max over `runs` activations and the pod's memory, before (whole
    log) and after (snapshot + tail), for a thread of `answers` answered prompts."""
    with tempfile.TemporaryDirectory(prefix="bench-activation-") as workdir:
        return asyncio.run(measure(Path(workdir), answers, runs))


if __name__ == "__main__":
    result = main(*(int(a) for a in sys.argv[1:3]))
    print(result)
