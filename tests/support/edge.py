"""A whole stack (redis, dev model, AI, one session service, search indexer, gateway) behind a
real Envoy rendered from the committed config: the builder's StackSpec(envoy=True, search=True)
on free ports, as `make run` starts it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from common.auth import mint
from deploy.stack.processes import Process
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started


class Edge:
    """The running stack, its Envoy and Envoy's URL."""

    def __init__(self, stack: Stack, envoy: Process, url: str, secret: bytes = b"") -> None:
        self.stack, self.envoy, self.url = stack, envoy, url
        self.secret = secret
        """The HS256 key when started with `secure=True`."""

    def token(self, user: str, ttl_s: int = 600, admin: bool = False) -> str:
        return mint(self.secret, user, ttl_s, admin=admin)


@contextlib.contextmanager
def running_edge(
    workdir: Path, token_delay_ms: int = 1, secure: bool = False, **envoy_overrides: int
) -> Iterator[Edge]:
    """Starts the stack and Envoy (with `secure`: AUTH_MODE=jwt and the dev login, as `make
    run`; `envoy_overrides` go to envoy_config.render: grpc_calls_per_ip_min,
    request_headers_timeout_s); stops every process afterwards, even on failure."""
    spec = StackSpec(
        auth=secure,
        dev_login=secure,
        token_delay_ms=token_delay_ms,
        search=True,
        envoy=True,
        envoy_overrides=envoy_overrides,
    )
    with started(workdir, spec) as stack:
        assert stack.envoy is not None
        secret = stack.auth_secret_file.read_bytes().strip() if stack.auth_secret_file else b""
        yield Edge(stack, stack.envoy, stack.envoy_url, secret)
