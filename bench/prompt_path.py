"""Which of our source files one prompt runs through, from the WebSocket frame to Redis and back.

`python -m bench.prompt_path` starts `make run`'s launcher (deploy/run_local.py) on free ports in
a temporary directory (AUTH_MODE=off, no Envoy: Envoy is not our code), opens one WebSocket,
sends a warm-up prompt, then traces `ROUNDS` more prompts one at a time: each Python process is
told by a signal to record the file of every function called (sys.setprofile) until the answer's
[DONE] has arrived. A file counts when every traced round ran it (so a lease renewal or heartbeat
that happens to fall in one round does not). Prints the files per process, then the count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
OURS = ("gateway", "session_service", "ai_service", "common")
PORTS = (
    *("REDIS_PORT", "DEV_MODEL_PORT", "AI_PORT", "SEARCH_PORT", "SESSION_PORT", "GATEWAY_PORT"),
    *("SESSION_METRICS_PORT", "AI_METRICS_PORT"),
)
SERVICES = ("gateway", "session-1", "ai")
"""The processes a prompt crosses (run_local.py's names; the dev model stands in for a provider)."""

TRACER = textwrap.dedent(
    """
    import os, signal, sys
    _seen = set()

    def _profile(frame, event, arg):
        if event == "call":
            _seen.add(frame.f_code.co_filename)

    def _start(signum, frame):
        _seen.clear()
        sys.setprofile(_profile)

    def _stop(signum, frame):
        sys.setprofile(None)
        out = os.path.join(os.environ["PROMPT_PATH_DIR"], f"{os.getpid()}.txt")
        with open(out + ".part", "w") as f:
            f.write("\\n".join(sorted(_seen)))
        os.replace(out + ".part", out)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the stack did not come up")


async def prompt(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
    await ws.send_str(text)
    async for frame in ws:
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"unexpected frame {frame.type}")
        if frame.data == "[DONE]":
            return
        if frame.data.startswith("[ERROR]"):
            raise RuntimeError(frame.data)
    raise RuntimeError("socket closed before [DONE]")


def collect(pids: dict[str, int], out: Path, round_no: int) -> dict[str, set[str]]:
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR2)
    files: dict[str, set[str]] = {}
    for name, pid in pids.items():
        path = out / f"{pid}.txt"
        wait_for(path.exists, 10.0)
        seen = {Path(f).resolve() for f in path.read_text().split("\n") if f}
        ours = {str(f.relative_to(ROOT)) for f in seen if f.is_relative_to(ROOT)}
        files[name] = {f for f in ours if f.split("/")[0] in OURS}
        path.rename(out / f"{pid}.{round_no}.txt")
    return files


async def trace(gateway: int, pids: dict[str, int], out: Path) -> dict[str, set[str]]:
    url = f"http://127.0.0.1:{gateway}/ws/prompt-path"
    rounds: list[dict[str, set[str]]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await prompt(ws, "warm up tokens=5")
        for n in range(ROUNDS):
            for pid in pids.values():
                os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(0.2)  # signal delivery has no acknowledgement to await
            await prompt(ws, f"traced {n} tokens=5")
            rounds.append(collect(pids, out, n))
    return {name: set.intersection(*(r[name] for r in rounds)) for name in pids}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "site").mkdir()
        (work / "site" / "sitecustomize.py").write_text(TRACER)
        (work / "out").mkdir()
        ports = {k: str(free_port()) for k in PORTS}
        env = {
            **os.environ,
            **ports,
            "AUTH_MODE": "off",
            "ENVOY": "off",
            "RUN_DIR": str(work / "run"),
            "DATA_DIR": str(work / "data"),
            "PROMPT_PATH_DIR": str(work / "out"),
            "PYTHONPATH": os.pathsep.join([str(work / "site"), str(ROOT)]),
        }
        launcher = subprocess.Popen(
            [sys.executable, "-m", "deploy.run_local"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            health = f"http://127.0.0.1:{ports['GATEWAY_PORT']}/healthz"
            wait_for(lambda: urllib.request.urlopen(health, timeout=1).status == 200)
            pids = {n: int((work / "run" / f"{n}.pid").read_text()) for n in SERVICES}
            files = asyncio.run(trace(int(ports["GATEWAY_PORT"]), pids, work / "out"))
        finally:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(60)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    print(f"prompt path at {git.stdout.decode().strip()}: files run in each of {ROUNDS} prompts")
    for name, seen in files.items():
        print(f"{name}: {len(seen)}")
        for f in sorted(seen):
            print(f"  {f}")
    print(f"total: {sum(len(s) for s in files.values())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
