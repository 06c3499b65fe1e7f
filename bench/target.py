"""The system a bench runs against, and what its processes cost (CPU time and RSS from /proc).

Either a running `make run` (found by its `.run/<name>.pid` files and default ports), any URLs
given on the command line (then process figures are left out), or a stack of our own on free
ports, started here and stopped by PID at the end.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEV_MODEL_TOKEN_DELAY_MS = 5
"""As `make run`: the dev model's pace, which bounds one answer's tokens/s."""


@dataclass
class Target:
    """Where the system listens, and the PIDs of its processes by role (empty when unknown)."""

    gateway_url: str
    session_addr: str
    pids: dict[str, list[int]] = field(default_factory=dict)
    """Roles: "session" (every pod), "gateway", "ai", "model", "redis"."""
    description: str = ""
    envoy_url: str = ""
    """Envoy in front (gRPC-web to the gateway's fan-out); "" when there is none."""

    @property
    def ws_url(self) -> str:
        return "ws" + self.gateway_url.removeprefix("http")

    def cpu_seconds(self, role: str) -> float | None:
        """User + system CPU time so far of the role's processes, or None when unknown."""
        pids = self.pids.get(role)
        if not pids:
            return None
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return total / CLOCK_TICKS

    def rss_bytes(self) -> int | None:
        """Resident memory of all our processes, summed; None when the PIDs are unknown."""
        pids = [pid for role in self.pids.values() for pid in role]
        if not pids:
            return None
        total = 0
        for pid in pids:
            resident = Path(f"/proc/{pid}/statm").read_text().split()[1]
            total += int(resident) * PAGE_SIZE
        return total


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, int(port))) == 0


def from_run_dir(gateway_url: str, session_addr: str, run_dir: Path) -> Target:
    """A `make run` system: PIDs from its pid files (names as deploy/run_local.py gives them)."""
    pids: dict[str, list[int]] = {}
    roles = {"gateway": "gateway", "ai": "ai", "model": "model", "redis": "redis"}
    for path in sorted(run_dir.glob("*.pid")):
        role = "session" if path.stem.startswith("session-") else roles.get(path.stem)
        if role is None:
            continue
        pid = int(path.read_text().split()[0])
        if Path(f"/proc/{pid}").exists():
            pids.setdefault(role, []).append(pid)
    return Target(gateway_url, session_addr, pids, "make run")


class OwnStack:
    """Redis, dev model, AI service, one session pod and the gateway (and Envoy with `envoy`), on
    free ports; the dev model paced at `token_delay_ms`, the pod and AI service with extra
    settings if given."""

    def __init__(
        self,
        token_delay_ms: int = DEV_MODEL_TOKEN_DELAY_MS,
        *,
        pod_env: Mapping[str, str] | None = None,
        ai_env: Mapping[str, str] | None = None,
        envoy: bool = False,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-")
        self.stack = Stack(Path(self._dir.name))
        self._spec = StackSpec(
            token_delay_ms=token_delay_ms, pod_env=pod_env or {}, ai_env=ai_env or {}, envoy=envoy
        )

    def start(self) -> Target:
        s = start(self.stack, self._spec)
        procs = {"redis": s.redis, "model": s.model, "ai": s.ai, "session": s.session}
        pids = {role: [p.pid] for role, p in procs.items() if p is not None}
        assert s.gateway is not None
        pids["gateway"] = [s.gateway.pid]
        return Target(s.gateway_url, s.session_addr, pids, "own stack on free ports", s.envoy_url)

    def close(self) -> None:
        self.stack.close()
        self._dir.cleanup()
