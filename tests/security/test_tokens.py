"""Tokens beyond the HS256 default, with AUTH_MODE=jwt on real pods: RS256 keys from a JWKS
endpoint (as an identity provider publishes them) and revoked tokens. Each test names what it
attacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common.auth import mint
from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.waits import async_eventually
from durablechat.v1 import session_pb2
from tests.support.secure import SecureStack, User, secure_stack
from tests.support.tokens import AUDIENCE, ISSUER, JWKS_ENV, rs256, rsa_key, status


class Jwks:
    """A JWKS endpoint on loopback serving one RSA public key as `kid` "k1"."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hs256_by_hand(secret: bytes, user: str) -> str:
    """An HS256 token keyed with `secret` (PyJWT refuses to sign with a PEM key, an attacker
    does not)."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    now = int(time.time())
    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = {"sub": user, "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE}
    claims = part(json.dumps(body).encode())
    signature = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{part(signature)}"


async def test_rs256_keys_from_a_jwks_endpoint(own_stack: Stack) -> None:
    """Attack: tokens signed by another RSA key, with an unknown kid, or HS256 with the public
    key as the secret (algorithm confusion); only the provider's RS256 tokens pass."""
    key = rsa_key()
    jwks = Jwks(key)
    try:
        own_stack.start_redis()
        own_stack.start_pod("pod-j", AUTH_MODE="jwt", AUTH_JWKS_URL=jwks.url, **JWKS_ENV)
        address = own_stack.pod_addrs["pod-j"]
        assert await status(address, rs256(key, "ann")) == grpc.StatusCode.OK
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        forged = {
            "another key": rs256(rsa_key(), "ann"),
            "unknown kid": rs256(key, "ann", kid="k2"),
            "hs256 with the public key": hs256_by_hand(pem, "ann"),
        }
        for why, token in forged.items():
            assert await status(address, token) == grpc.StatusCode.UNAUTHENTICATED, why
    finally:
        jwks.close()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("tokens")) as running:
        yield running


async def test_a_revoked_token_is_refused_on_every_pod(secure: SecureStack) -> None:
    """Attack: keep using a token after its user revoked it (`durablechat revoke`)."""
    leaked = secure.token("rita")
    for pod in secure.stack.pod_addrs.values():
        assert await status(pod, leaked) == grpc.StatusCode.OK
    assert secure.stack.redis is not None
    argv = [sys.executable, "-m", "admin", "revoke", "--user", "rita"]
    argv += ["--redis-url", secure.stack.redis.url]
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    before = int(done.stdout.split(" issued before ")[1].split()[0])
    for pod in secure.stack.pod_addrs.values():

        async def refused(address: str = pod) -> bool:  # within the pods' 2 s cache
            return await status(address, leaked) == grpc.StatusCode.UNAUTHENTICATED

        await async_eventually(refused, within=5, interval=0.1)
    fresh = mint(secure.secret, "rita", 300, now=before)
    for pod in secure.stack.pod_addrs.values():
        assert await status(pod, fresh) == grpc.StatusCode.OK
    other = secure.token("ron")  # only rita's tokens are void
    assert await status(secure.stack.pod_addrs["pod-a"], other) == grpc.StatusCode.OK
    request = session_pb2.GetUserUsageRequest()
    user = User("rita", leaked, secure.stack.pod_addrs["pod-b"])
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await user.call("GetUserUsage", request)
        assert "revoked" in (err.value.details() or "")
    finally:
        await user.close()
