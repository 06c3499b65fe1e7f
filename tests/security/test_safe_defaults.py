"""Safe defaults outside a laptop, with AUTH_MODE=jwt on real processes: Host names, the dev
login beyond loopback, services that refuse to start unprotected, issuer/audience, a slow JWKS
endpoint, tokens in logs, the cookie over https. Each test names the attack it stops."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.auth import mint, new_secret
from common.jwks import JwksError, JwksKeys
from deploy.stack.ports import free_port
from deploy.stack.processes import ROOT, RedisServer, python_module
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import session_pb2, session_pb2_grpc
from tests.support.secure import room_id
from tests.support.tokens import JWKS_ENV, rs256, rsa_key, status

RELEASE_TIMEOUT_S = 60.0
"""A held JWKS reply is sent after this long even if the test never releases it."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, bytes]]:
    """Redis, one pod and a gateway with AUTH_MODE=jwt and the dev login on (loopback),
    trusting 127.0.0.1 as its proxy (as `make run` trusts Envoy)."""
    workdir = tmp_path_factory.mktemp("safe-defaults")
    secret_file = workdir / "auth-secret"
    secret_file.write_bytes(new_secret())
    auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(secret_file)}
    stack = Stack(workdir)
    try:
        stack.start_redis()
        stack.start_session(**auth)
        stack.start_gateway(AUTH_DEV_LOGIN="true", TRUSTED_PROXIES="127.0.0.1", **auth)
        yield stack, secret_file.read_bytes().strip()
    finally:
        stack.close()


async def login(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object], str]:
    """POST /api/login as ann: (status, JSON body, Set-Cookie header)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/login", json={"user": "ann"}, headers=headers) as reply,
    ):
        return reply.status, await reply.json(), reply.headers.get("Set-Cookie", "")


async def test_dns_rebinding_host_is_refused(gateway: tuple[Stack, bytes]) -> None:
    """Attack: a page on evil.example whose DNS name is re-pointed at 127.0.0.1 calls the
    gateway as its own origin and signs in through the dev login."""
    stack, _ = gateway
    port = stack.gateway_url.rsplit(":", 1)[1]
    status_code, body, cookie = await login(stack.gateway_url, {"Host": f"evil.example:{port}"})
    assert status_code == 400, body
    assert body["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": f"Host 'evil.example:{port}' is not served here; the operator lists the "
        "names this gateway answers in ALLOWED_HOSTS",
    }
    assert cookie == ""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.gateway_url}/api/me", headers={"Host": "evil.example"}) as me,
    ):
        assert me.status == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):  # the names a laptop uses work
        status_code, body, cookie = await login(stack.gateway_url, {"Host": host})
        assert status_code == 200 and "dc_token=" in cookie, body


async def test_cookie_secure_over_https(gateway: tuple[Stack, bytes]) -> None:
    """Attack: a network observer reads the session cookie when the browser, having logged in
    over https, later sends it over plain http; over https the cookie is `Secure`."""
    stack, _ = gateway
    _, _, plain = await login(stack.gateway_url, {})
    _, _, tls = await login(stack.gateway_url, {"X-Forwarded-Proto": "https"})
    assert "Secure" not in plain and "HttpOnly" in plain
    assert "Secure" in tls and "HttpOnly" in tls and "SameSite=Strict" in tls


async def test_ws_subprotocol_token_never_logged(gateway: tuple[Stack, bytes]) -> None:
    """Attack: read tokens from the gateway's logs (shipped to a log store many people read).
    A token sent as a WebSocket subprotocol (`bearer.<token>`) must appear in no line: access
    log, aiohttp's handshake warnings, our JSON logs, on success or refusal."""
    stack, secret = gateway
    assert stack.gateway is not None
    ws_url = stack.gateway_url.replace("http://", "ws://") + f"/ws/{room_id()}"
    good = mint(secret, "ann", 600)
    forged = mint(new_secret(), "ann", 600)
    expired = mint(secret, "ann", -600)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url, protocols=("durablechat", f"bearer.{good}")) as ws:
            await ws.send_str("(GET_HISTORY)")
            assert (await ws.receive(timeout=15)).type is aiohttp.WSMsgType.TEXT
        # Without `durablechat`: aiohttp's handshake warns, quoting the client's protocols.
        async with http.ws_connect(ws_url, protocols=(f"bearer.{good}",)) as ws:
            await ws.close()
        for bad in (forged, expired):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_url, protocols=("durablechat", f"bearer.{bad}"))
            assert refused.value.status == 401
    log = stack.gateway.log_path
    eventually(lambda: log.read_text().count('"socket closed"') >= 2, timeout=15)
    eventually(lambda: "overlap" in log.read_text(), timeout=15)  # the warning was written
    text = log.read_text()
    for token in (good, forged, expired):
        signature = token.rsplit(".", 1)[1]
        assert token not in text and signature not in text, "a token reached the log"
    assert "[redacted]" in text


def start_refused(name: str, module: str, env: dict[str, str], tmp_path: Path) -> str:
    """Starts `module` and returns what it printed when it exited; fails if it keeps running
    (it would be serving, unprotected)."""
    proc = python_module(name, module, env, tmp_path)
    proc.start()
    assert proc.proc is not None
    try:
        proc.proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.stop()
        pytest.fail(f"{name} started beyond loopback:\n{proc.log_tail()}")
    assert proc.proc.returncode != 0
    return proc.log_path.read_text()


def test_dev_login_refused_beyond_loopback(tmp_path: Path) -> None:
    """Attack: anyone on the network signs in as anyone through the dev login of a gateway
    bound to 0.0.0.0 (or a LAN address)."""
    secret_file = tmp_path / "auth-secret"
    secret_file.write_bytes(new_secret())
    env = {
        "AUTH_MODE": "jwt",
        "AUTH_SECRET_FILE": str(secret_file),
        "AUTH_DEV_LOGIN": "true",
        "BIND_HOST": "0.0.0.0",
        "GATEWAY_PORT": str(free_port()),
    }
    said = start_refused("gateway", "gateway", env, tmp_path)
    assert "AUTH_DEV_LOGIN=true" in said and "BIND_HOST=0.0.0.0" in said, said
    assert "set AUTH_DEV_LOGIN=false" in said


def test_pod_beyond_loopback_without_redis_password_refuses_to_start(tmp_path: Path) -> None:
    """Attack: read or rewrite every session straight in a password-less Redis that a pod on
    the network points at. The same pod starts once Redis has a password."""
    cluster = tmp_path / "cluster-secret"
    cluster.write_bytes(new_secret())
    port = free_port()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        "BIND_HOST": "0.0.0.0",
        "SESSION_PORT": str(port),
        "ADVERTISE_ADDR": f"127.0.0.1:{port}",
        "REDIS_URL": redis.url,
        "CLUSTER_SECRET_FILE": str(cluster),
    }
    try:
        said = start_refused("pod", "session_service", env, tmp_path)
        assert "REDIS_URL has no password" in said and "REDIS_PASSWORD_FILE" in said, said
        assert "ALLOW_INSECURE_NETWORK=true" in said
        password = tmp_path / "redis-password"
        password.write_bytes(new_secret())
        with redis.client() as client:
            client.config_set("requirepass", password.read_text())
        pod = python_module(
            "pod-ok", "session_service", env | {"REDIS_PASSWORD_FILE": str(password)}, tmp_path
        )
        pod.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                eventually(
                    lambda: (
                        health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ),
                    timeout=30,
                )
        finally:
            pod.stop()
        revoke = subprocess.run(  # the operator's CLI finds the password the same way
            [sys.executable, "-m", "admin", "revoke", "--user", "ann", "--redis-url", redis.url],
            cwd=ROOT,
            env={**os.environ, "REDIS_PASSWORD_FILE": str(password)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert revoke.returncode == 0, revoke.stderr
    finally:
        redis.kill9()


@pytest.mark.parametrize(
    ("module", "env", "named"),
    [
        pytest.param(
            "ai_service",
            {"AI_PORT": "0", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"},
            "CLUSTER_SECRET_FILE is unset",
            id="ai-service-open",
        ),
        pytest.param(
            "session_service",
            {"SESSION_PORT": "0", "REDIS_URL": "redis://:pw@127.0.0.1:1/0"},
            "CLUSTER_SECRET_FILE is unset",
            id="pod-calling-an-open-ai-service",
        ),
        pytest.param(
            "session_service.search",
            {"SEARCH_PORT": "0", "REDIS_URL": "redis://127.0.0.1:1/0"},
            "REDIS_URL has no password",
            id="search-indexer",
        ),
        pytest.param(
            "gateway",
            {"GATEWAY_PORT": "0", "RATE_LIMIT_REDIS_URL": "redis://127.0.0.1:1/0"},
            "RATE_LIMIT_REDIS_URL has no password",
            id="gateway-limits-redis",
        ),
    ],
)
def test_unprotected_service_beyond_loopback_refuses_to_start(
    module: str, env: dict[str, str], named: str, tmp_path: Path
) -> None:
    """Attack: use a service bound to the network that has no credential in front of its
    backend (the model at the operator's cost, a password-less Redis)."""
    said = start_refused(module, module, {"BIND_HOST": "0.0.0.0", **env}, tmp_path)
    assert named in said and "BIND_HOST=0.0.0.0" in said, said


class SlowJwks:
    """A JWKS endpoint that holds each reply until `release()` (a slow identity provider)."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})
        self.fetches = 0
        self.requested = threading.Event()
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                outer.requested.set()
                outer.released.wait(RELEASE_TIMEOUT_S)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


async def test_slow_jwks_does_not_block_other_calls(own_stack: Stack) -> None:
    """Attack: stall a whole pod by making it fetch keys from a slow (or attacker-slowed) JWKS
    endpoint. While the fetch hangs, the pod still answers other calls."""
    key = rsa_key()
    jwks = SlowJwks(key)
    try:
        own_stack.start_redis()
        own_stack.start_pod("pod-s", AUTH_MODE="jwt", AUTH_JWKS_URL=jwks.url, **JWKS_ENV)
        address = own_stack.pod_addrs["pod-s"]
        waiting = asyncio.ensure_future(status(address, rs256(key, "ann")))
        assert await asyncio.to_thread(jwks.requested.wait, 30), "the pod never fetched"
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = session_pb2_grpc.SessionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await stub.GetSession(session_pb2.GetSessionRequest(session_id="x"), timeout=5)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert not waiting.done(), "the keyed call did not wait for its key"
        jwks.release()
        assert await asyncio.wait_for(waiting, 30) == grpc.StatusCode.OK
    finally:
        jwks.close()


class FastJwks(SlowJwks):
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        super().__init__(key)
        self.release()


async def test_wrong_audience_token_refused(own_stack: Stack) -> None:
    """Attack: replay a token the same identity provider issued for another application (or
    another issuer's token) against our services; only iss=AUTH_ISSUER, aud=AUTH_AUDIENCE
    pass."""
    key = rsa_key()
    jwks = FastJwks(key)
    try:
        own_stack.start_redis()
        own_stack.start_pod("pod-a", AUTH_MODE="jwt", AUTH_JWKS_URL=jwks.url, **JWKS_ENV)
        address = own_stack.pod_addrs["pod-a"]
        assert await status(address, rs256(key, "ann")) == grpc.StatusCode.OK
        for why, token in {
            "another audience": rs256(key, "ann", aud="another-app"),
            "another issuer": rs256(key, "ann", iss="https://evil.example/"),
        }.items():
            assert await status(address, token) == grpc.StatusCode.UNAUTHENTICATED, why
    finally:
        jwks.close()


def test_jwks_without_issuer_and_audience_refuses_to_start(tmp_path: Path) -> None:
    """Attack: as above, on a deployment that forgot to name its issuer and audience."""
    env = {"AUTH_MODE": "jwt", "AUTH_JWKS_URL": "http://127.0.0.1:1/jwks", "SESSION_PORT": "0"}
    said = start_refused("pod", "session_service", env, tmp_path)
    assert "AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE" in said, said


async def test_made_up_kids_do_not_flood_the_identity_provider() -> None:
    """Attack: send tokens with ever new `kid`s so that every call makes the service fetch the
    JWKS again (load on the provider, threads held here). Unknown kids fetch at most once per
    MIN_REFRESH_S; concurrent callers share one fetch."""
    key = rsa_key()
    jwks = FastJwks(key)
    try:
        keys = JwksKeys(jwks.url)
        tokens = [rs256(key, "ann", kid=f"made-up-{i}") for i in range(20)]
        results = await asyncio.gather(*(keys.key(t) for t in tokens), return_exceptions=True)
        assert all(isinstance(r, JwksError) for r in results), results
        assert jwks.fetches == 1
        assert await keys.key(rs256(key, "ann")) is not None  # the real kid, from that fetch
        assert jwks.fetches == 1
    finally:
        jwks.close()
