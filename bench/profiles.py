"""py-spy flame graphs of every Python process of a stack (and of the load client) while a run
goes on: `with Recorders(pids, out_dir, label):` records one SVG per process, `<role>-<label>.svg`.

py-spy samples from outside the process (`--nonblocking`: it never pauses the process it reads,
so the figures measured meanwhile stay close to an unprofiled run) at RATE_HZ; only samples of a
thread on the CPU are kept (py-spy's default), so the width of a frame is its share of CPU time.
Each recorder is a child process stopped with SIGINT (py-spy then writes its file) by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

PYTHON_ROLES = ("ai", "session", "gateway", "search", "model")
RATE_HZ = 97
"""Not 100: a rate off the event loop's 10 ms timers keeps samples from locking onto them."""
STOP_TIMEOUT_S = 30.0


def py_spy() -> str:
    """The py-spy beside this interpreter (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy (requirements-dev.txt)")
    return found


TITLE = re.compile(r'(<text id="title"[^>]*>)[^<]*(</text>)')


def retitle(svg: Path, what: str) -> None:
    """py-spy titles a graph with its command line (absolute paths): name the process instead."""
    if svg.exists():
        title = f"py-spy record --nonblocking --rate {RATE_HZ}: {what}"
        text = TITLE.sub(lambda m: m[1] + title + m[2], svg.read_text(), count=1)
        svg.write_text(text)


class Recorders:
    """One py-spy recorder per Python process while the block runs; none when `out` is None."""

    def __init__(self, pids: dict[str, list[int]], out: Path | None, label: object) -> None:
        self._targets: list[tuple[str, int]] = []
        if out is not None:
            for role in PYTHON_ROLES:
                self._targets += [(role, pid) for pid in pids.get(role, [])]
            self._targets.append(("client", os.getpid()))
        self._out = out
        self._label = label
        self._running: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Recorders:
        if self._out is None:
            return self
        self._out.mkdir(parents=True, exist_ok=True)
        binary = py_spy()
        for role, pid in self._targets:
            svg = self._out / f"{role}-{self._label}.svg"
            argv = [binary, "record", "--nonblocking", "--rate", str(RATE_HZ)]
            argv += ["--pid", str(pid), "--output", str(svg)]
            log = (self._out / f"{role}-{self._label}.log").open("wb")
            self._logs.append(log)
            self._running.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for recorder in self._running:
            recorder.send_signal(signal.SIGINT)
        for recorder in self._running:
            try:
                recorder.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
        self._running.clear()
        if self._out is not None:
            for role, _ in self._targets:
                retitle(self._out / f"{role}-{self._label}.svg", f"{role}, {self._label}")
        for log in self._logs:
            log.close()
        self._logs.clear()
