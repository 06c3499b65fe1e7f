"""Tokens beyond the HS256 default: an RSA key, RS256 tokens for an issuer and audience, and
the status one call with a token gets."""

from __future__ import annotations

import time

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.secure import User, room_id


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


ISSUER = "https://id.example.test/"

AUDIENCE = "durablechat"

JWKS_ENV = {"AUTH_ISSUER": ISSUER, "AUTH_AUDIENCE": AUDIENCE}
"""AUTH_JWKS_URL needs both (a provider signs tokens for other applications too)."""


def rs256(
    key: rsa.RSAPrivateKey, user: str, kid: str = "k1", iss: str = ISSUER, aud: str = AUDIENCE
) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 300, "iss": iss, "aud": aud}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def status(address: str, token: str) -> grpc.StatusCode:
    user = User("x", token, address)
    try:
        await user.post(room_id(), "hello")
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await user.close()
    return grpc.StatusCode.OK
