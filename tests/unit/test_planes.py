"""The cluster key (common/planes.py) and the admin claim (common/auth.py): when the key is
required, what counts as carrying it, and which tokens are an operator's."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_service.config import Config as AiConfig
from common.auth import is_admin, mint, new_secret
from common.config import ConfigError
from common.planes import ClusterKey
from common.wire import CLUSTER_KEY
from gateway.config import Config as GatewayConfig
from session_service.config import Config as SessionConfig


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster-secret"
    path.write_bytes(new_secret())
    return path


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(SessionConfig.from_env, id="session"),
        pytest.param(GatewayConfig.from_env, id="gateway"),
        pytest.param(AiConfig.from_env, id="ai"),
    ],
)
def test_jwt_mode_without_a_cluster_key_fails_at_start_naming_the_setting(
    load: object, tmp_path: Path
) -> None:
    auth_file = tmp_path / "auth-secret"
    auth_file.write_bytes(new_secret())
    env = {"AUTH_SECRET_FILE": str(auth_file), "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    with pytest.raises(ConfigError, match="needs CLUSTER_SECRET_FILE"):
        load(env)  # type: ignore[operator]


def test_off_mode_without_a_key_is_open() -> None:
    key = ClusterKey.from_env({"AUTH_MODE": "off"})
    assert key.open and key.metadata() == ()
    assert key.carried_by(())


def test_a_short_or_missing_file_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("password")
    with pytest.raises(ConfigError, match="CLUSTER_SECRET_FILE"):
        ClusterKey.from_env({"CLUSTER_SECRET_FILE": str(short)})
    with pytest.raises(ConfigError, match="cannot read"):
        ClusterKey.from_env({"CLUSTER_SECRET_FILE": str(tmp_path / "absent")})


def test_only_the_exact_key_counts(secret_file: Path) -> None:
    key = ClusterKey.from_env({"CLUSTER_SECRET_FILE": str(secret_file)})
    real = secret_file.read_text().strip()
    assert key.carried_by(key.metadata()) and key.metadata() == ((CLUSTER_KEY, real),)
    assert key.carried_by([(CLUSTER_KEY, real.encode())])
    assert not key.carried_by(())
    assert not key.carried_by([(CLUSTER_KEY, real[:-1])])
    assert not key.carried_by([(CLUSTER_KEY, real + "0")])
    assert not key.carried_by([(CLUSTER_KEY, "x"), (CLUSTER_KEY, real)])  # the first one counts
    assert key.sent_in([(CLUSTER_KEY, "x")]) and not key.sent_in([("authorization", real)])


def test_only_tokens_minted_with_admin_are_an_operators() -> None:
    secret = new_secret()
    assert is_admin(f"Bearer {mint(secret, 'ops', 60, admin=True)}")
    assert not is_admin(f"Bearer {mint(secret, 'ann', 60)}")
    assert not is_admin("Bearer not-a-token")
