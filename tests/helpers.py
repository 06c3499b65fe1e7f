"""Test plumbing: free ports, polling, and real processes (redis-server, our services) by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.run_local import port_busy

ROOT = Path(__file__).resolve().parent.parent


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


class _Wait:
    """One wait: its deadline, and the answer once there is one."""

    def __init__(self, fn: Callable[[], Any], timeout: float) -> None:
        self.fn = fn
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.result: Any = None

    def done(self, result: Any, error: BaseException | None) -> bool:
        """Whether `result` is the answer; the error (or the falsy result) once time is up."""
        if error is None and result:
            self.result = result
            return True
        if time.monotonic() > self.deadline:
            why = error or AssertionError(f"{self.fn} stayed falsy: {result!r}")
            raise AssertionError(f"not true within {self.timeout}s") from why
        return False


# An attempt's error is caught in these, not in the waiting loop: a traceback that held the
# loop's frame, which holds the error, would be a cycle only the garbage collector frees, and an
# object freed that late (an HTTP error's socket) warns in whichever test runs then.
def _tried(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


async def _tried_async(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, BaseException | None]:
    try:
        return await fn(), None
    except Exception as exc:
        return None, exc


def eventually(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Calls fn until it returns a truthy value without raising; the last error if it never does."""
    wait = _Wait(fn, timeout)
    while not wait.done(*_tried(fn)):
        time.sleep(interval)
    return wait.result


async def async_eventually(
    fn: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.02
) -> Any:
    """The asyncio form of `eventually`."""
    wait = _Wait(fn, within)
    while True:
        if wait.done(*await _tried_async(fn)):
            return wait.result
        await asyncio.sleep(interval)


class Process:
    """A child process we started; stopped by its PID, output kept in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class RedisServer(Process):
    """A real redis-server with AOF on and fsync always, data in its own directory."""

    def __init__(self, data_dir: Path, port: int | None = None, *also_bind: str) -> None:
        self.port = port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            *also_bind,
            *(["--protected-mode", "no"] if also_bind else []),  # test hosts in our netns
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        super().__init__("redis", argv, os.environ, data_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        super().start()
        eventually(self._ready, timeout=10)

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"redis-server exited:\n{self.log_tail()}")
        with self.client() as client:
            return bool(client.ping())


def python_module(name: str, module: str, env: Mapping[str, str], log_dir: Path) -> Process:
    """A `python -m module` child with our environment plus `env`; anonymous access
    (`AUTH_MODE=off`) and no automatic thread titles (they add a log event after a thread's
    first answer) unless `env` says otherwise."""
    defaults = {"PYTHONUNBUFFERED": "1", "AUTH_MODE": "off", "AUTO_TITLE_TOKENS": "0"}
    full_env = {**os.environ, **defaults, **env}
    return Process(name, [sys.executable, "-m", module], full_env, log_dir / f"{name}.log")


def wait_grpc_serving(proc: Process, address: str, timeout: float = 20.0) -> None:
    """Waits until the gRPC health service at `address` answers SERVING."""

    def check() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    eventually(check, timeout=timeout, interval=0.05)


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """GET url: its status and body, error statuses included. An error's response is closed here:
    an HTTPError left to the garbage collector warns of its open socket (ResourceWarning, an
    error under our filterwarnings) in whatever test happens to run then."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as failed:
        with failed:
            return failed.code, failed.read()


def wait_http_ok(proc: Process, url: str, timeout: float = 20.0) -> None:
    """Waits until GET url answers 200."""

    def check() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        return http_get(url)[0] == 200

    eventually(check, timeout=timeout, interval=0.05)
