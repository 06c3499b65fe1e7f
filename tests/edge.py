"""A real Envoy in front of a Stack's gateway and session service, rendered from the committed
config (deploy/envoy_config.py), on free ports."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from common.auth import mint
from deploy import envoy_config
from deploy.make_secret import ensure as ensure_secret
from tests.helpers import Process, eventually, free_port, http_get
from tests.stack import Stack

ENVOY = str(Path(sys.executable).parent / "envoy")


def start_envoy(stack: Stack, workdir: Path, **overrides: int) -> tuple[Process, str]:
    """(the Envoy process, its URL); the caller stops the process. `overrides` go to
    envoy_config.render (grpc_calls_per_ip_min, request_headers_timeout_s)."""
    port, admin = free_port(), free_port()
    session_host, session_port = stack.session_addr.rsplit(":", 1)
    gateway_port = int(stack.gateway_url.rsplit(":", 1)[1])
    config = envoy_config.render(
        ("127.0.0.1", port),
        admin,
        ("127.0.0.1", gateway_port),
        [(session_host, int(session_port))],
        ("http://example.test",),
        _address(stack.search_addr) if stack.search_addr else ("127.0.0.1", 1),
        **overrides,
    )
    path = envoy_config.write(workdir / "envoy.yaml", config)
    argv = [ENVOY, "-c", str(path), "--disable-hot-restart", "-l", "warning"]
    envoy = Process("envoy", argv, {}, workdir / "envoy.log")
    envoy.start()

    def ready() -> bool:
        status, body = http_get(f"http://127.0.0.1:{admin}/ready")
        return status == 200 and body.strip() == b"LIVE"

    try:
        eventually(ready, timeout=20)
    except BaseException:
        envoy.stop()
        raise
    return envoy, f"http://127.0.0.1:{port}"


def _address(host_port: str) -> tuple[str, int]:
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


class Edge:
    """A whole stack (redis, dev model, AI, one session pod, gateway) behind a real Envoy."""

    def __init__(self, stack: Stack, envoy: Process, url: str, secret: bytes = b"") -> None:
        self.stack, self.envoy, self.url = stack, envoy, url
        self.secret = secret
        """The HS256 key when started with `secure=True`."""

    def token(self, user: str, ttl_s: int = 600) -> str:
        return mint(self.secret, user, ttl_s)


@contextlib.contextmanager
def running_edge(
    workdir: Path, token_delay_ms: int = 1, secure: bool = False, **envoy_overrides: int
) -> Iterator[Edge]:
    """Starts the stack and Envoy (with `secure`: AUTH_MODE=jwt and the dev login, as `make
    run`; `envoy_overrides` as start_envoy's); stops every process afterwards, even on
    failure."""
    stack = Stack(workdir)
    envoy: Process | None = None
    auth: dict[str, str] = {}
    secret = b""
    if secure:
        ensure_secret(workdir / "auth-secret")
        secret = (workdir / "auth-secret").read_bytes().strip()
        auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(workdir / "auth-secret")}
    try:
        stack.start_redis()
        stack.start_model(token_delay_ms=token_delay_ms)
        stack.start_ai()
        stack.start_session(**auth)
        stack.start_search(**auth)
        login = {"AUTH_DEV_LOGIN": "true"} if secure else {}
        stack.start_gateway(**auth, **login, SEARCH_SERVICE_ADDR=stack.search_addr)
        envoy, url = start_envoy(stack, workdir, **envoy_overrides)
        yield Edge(stack, envoy, url, secret)
    finally:
        if envoy is not None:
            envoy.stop()
        stack.close()
