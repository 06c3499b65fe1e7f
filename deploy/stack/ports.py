"""Ports: whether one is busy, and a free one for a stack on free ports."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path


def port_busy(host: str, port: int) -> bool:
    """Whether something listens on (or holds) `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux: 32768 by default)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


# Ports for our servers come from below the kernel's ephemeral range: a port the kernel picked
# (bind to 0) can be taken by any outgoing connection between the pick and the server's own bind,
# which failed a server's start about once in a few full runs.
PORTS = range(max(1024, min(_ephemeral_low(), 32768) - 12000), min(_ephemeral_low(), 32768))
_handed_out: set[int] = set()
_pick = random.SystemRandom()  # not the global one, which hypothesis seeds


def free_port(*offsets: int) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never the same one twice in a
    run (a stopped server's port is not handed to the next one while it may linger). With
    `offsets`, port + each offset is free, in the same range and reserved too (`make run` puts
    pod i at SESSION_PORT + 100 (i - 1))."""
    for _ in range(1000):
        port = _pick.choice(PORTS)
        wanted = [port, *(port + offset for offset in offsets)]
        if any(p in _handed_out or p not in PORTS for p in wanted):
            continue
        if not any(port_busy("127.0.0.1", p) for p in wanted):
            _handed_out.update(wanted)
            return port
    raise RuntimeError(f"no free port left in {PORTS}")
