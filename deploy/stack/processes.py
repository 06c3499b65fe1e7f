"""Child processes we start and stop by PID: any argv, redis-server (AOF, fsync always), a
`python -m` service of ours, and waits for one to be ready (gRPC health, HTTP 200)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.stack.ports import free_port
from deploy.stack.waits import eventually, http_get

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: every child runs here, so `python -m <our module>` imports."""
QUIET = {"AUTH_MODE": "off", "AUTO_TITLE_TOKENS": "0"}
"""A stack of its own (tests, bench): anonymous access and no automatic thread titles (they
add a log event after a thread's first answer), unless the caller's env says otherwise."""


class Process:
    """A child process we started; stopped by its PID, output kept in a log file.

    With `pid_file`, its PID is written there on start and removed on stop (if still ours).
    `detached` starts it in a session of its own, so a Ctrl-C reaches only the launcher, which
    stops the children in order. `start()` after a stop (or a crash) starts the same command
    again, with the same environment and log."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        pid_file: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.pid_file = pid_file
        self.detached = detached
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=self.detached,
        )
        log.close()
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.proc.pid}\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; its PID file goes."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self.pid_file is not None and self.proc is not None:
            with contextlib.suppress(OSError):  # a newer run may have written its own PID there
                if self.pid_file.read_text().strip() == str(self.proc.pid):
                    self.pid_file.unlink()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class RedisServer(Process):
    """A real redis-server with AOF on and fsync always, data in its own directory.

    `also_bind`: more addresses to listen on (a test host in a network namespace; protected
    mode is then off). `conf`: a config file to load first (`make run` beyond loopback: the
    password); `password` is what the readiness check and `client()` send."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *also_bind: str,
        host: str = "127.0.0.1",
        conf: Path | None = None,
        password: str = "",
        log_path: Path | None = None,
        pid_file: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.host = host
        self.password = password
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server",
            *([str(conf)] if conf else []),
            "--port",
            str(self.port),
            "--bind",
            host,
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
        log = log_path or data_dir / "redis.log"
        super().__init__("redis", argv, os.environ, log, pid_file=pid_file, detached=detached)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host if self.host != "0.0.0.0" else "127.0.0.1",
            port=self.port,
            password=self.password or None,
            socket_timeout=5,
            decode_responses=True,
        )

    def start(self) -> None:
        super().start()
        eventually(self._ready, timeout=10)

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"redis-server exited:\n{self.log_tail()}")
        with self.client() as client:
            return bool(client.ping())


def python_module(
    name: str,
    module: str,
    env: Mapping[str, str],
    log_dir: Path,
    base: Mapping[str, str] = QUIET,
    *,
    pid_file: Path | None = None,
    detached: bool = False,
) -> Process:
    """A `python -m module` child with our environment, then `base` (QUIET unless the caller
    gives its own), then `env`; `pid_file` and `detached` as Process's."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **base, **env}
    argv = [sys.executable, "-m", module]
    log = log_dir / f"{name}.log"
    return Process(name, argv, full_env, log, pid_file=pid_file, detached=detached)


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


def wait_http_ok(proc: Process, url: str, timeout: float = 20.0) -> None:
    """Waits until GET url answers 200."""

    def check() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        return http_get(url)[0] == 200

    eventually(check, timeout=timeout, interval=0.05)
