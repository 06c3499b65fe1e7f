"""One load-client process of bench i) (`python -m bench.rest_client`, started by
bench/rest_load.py through bench/load_clients.py): its share of the sessions, one worker each,
`POST /api/chat/session/{id}/messages` one after another.

Job: `gateway_url`, `auth_secret` (hex, "" with access control off), `sessions` ([thread,
user] pairs), `seconds`. Getting ready appends once to every session (its first write claims
it with access control on, and the connection is open before the clock starts); a failure
there fails the client. On go every worker appends until `seconds` have passed; the report
holds each acknowledged append's latency, the count of each non-2xx status (never retried),
this process's CPU time over the run and when it ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.credentials import Credentials
from bench.environment import raise_open_files_limit
from bench.load_clients import ready_then_go, serve

CONTENT = "x" * 80


async def append(http: aiohttp.ClientSession, url: str, headers: dict[str, str], key: str) -> int:
    body = {"role": "user", "content": CONTENT, "clientMessageId": key}
    async with http.post(url, json=body, headers=headers) as reply:
        await reply.read()
        return reply.status


async def run(job: dict[str, Any]) -> dict[str, Any]:
    credentials = Credentials.from_hex(job["auth_secret"])
    targets = [
        (f"{job['gateway_url']}/api/chat/session/{thread}/messages", credentials.headers(user))
        for thread, user in job["sessions"]
    ]
    samples: list[float] = []
    failed: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(
            *(append(http, url, headers, f"ready-{time.time_ns()}") for url, headers in targets)
        )
        if any(s >= 300 for s in statuses):
            raise RuntimeError(f"appends before the run failed: {Counter(statuses)}")
        await ready_then_go()
        cpu = time.process_time()
        deadline = time.monotonic() + job["seconds"]

        async def worker(url: str, headers: dict[str, str]) -> None:
            k = 0
            while time.monotonic() < deadline:
                k += 1
                sent = time.monotonic()
                status = await append(http, url, headers, f"{time.time_ns()}-{k}")
                if status >= 300:
                    failed[str(status)] += 1
                else:
                    samples.append(time.monotonic() - sent)

        await asyncio.gather(*(worker(url, headers) for url, headers in targets))
        return {
            "samples": samples,
            "failed": dict(failed),
            "cpu_s": time.process_time() - cpu,
            "ended": time.monotonic(),
        }


def main() -> None:
    raise_open_files_limit()
    serve(run)


if __name__ == "__main__":
    main()
