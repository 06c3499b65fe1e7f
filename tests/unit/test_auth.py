"""Token verification: only a well-signed, unexpired token with a subject names a caller."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from common.auth import AuthConfig, AuthError, Verifier, mint, new_secret

SECRET = new_secret()


def verifier(mode: str = "jwt") -> Verifier:
    return Verifier(AuthConfig(mode=mode, secret=SECRET))


def test_a_minted_token_names_its_user() -> None:
    assert verifier().user(f"Bearer {mint(SECRET, 'ann', 60)}") == "ann"


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "needs"),
        ("", "needs"),
        ("Basic YW5uOnB3", "Bearer"),
        ("Bearer not-a-jwt", "not valid"),
        (f"Bearer {mint(SECRET, 'ann', -60)}", "expired"),
        (f"Bearer {mint(new_secret(), 'ann', 60)}", "not valid"),  # another key
    ],
)
def test_anything_else_is_refused(header: str | None, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verifier().user(header)


def test_an_unsigned_alg_none_token_is_refused() -> None:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": "mallory", "exp": int(time.time()) + 60}
    forged = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    with pytest.raises(AuthError):
        verifier().user(f"Bearer {forged}")


def test_a_token_without_subject_or_expiry_is_refused() -> None:
    for claims in ({"exp": int(time.time()) + 60}, {"sub": "ann"}):
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        with pytest.raises(AuthError):
            verifier().user(f"Bearer {token}")


def test_with_auth_off_no_token_is_fine_but_a_bad_one_is_still_refused() -> None:
    assert verifier("off").user(None) == ""
    with pytest.raises(AuthError):
        verifier("off").user("Bearer nonsense")


def test_jwt_mode_needs_a_key() -> None:
    with pytest.raises(ValueError, match="AUTH_SECRET_FILE"):
        AuthConfig.from_env({"AUTH_MODE": "jwt"})
