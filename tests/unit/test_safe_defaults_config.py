"""Parsing of the beyond-loopback settings: BIND_HOST, Redis passwords, ALLOW_INSECURE_NETWORK,
AUTH_DEV_LOGIN, ALLOWED_HOSTS, AUTH_ISSUER/AUTH_AUDIENCE; and the log redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from ai_service.config import Config as AiConfig
from common.auth import AuthConfig
from common.config import ConfigError
from common.exposure import check_exposure, has_password, is_loopback, redacted, with_password
from common.logs import redact
from gateway.abuse import parse_networks
from gateway.config import Config as GatewayConfig
from gateway.hosts import host_name, is_allowed, parse_allowed_hosts
from gateway.identity import DevLogin
from session_service.config import Config as SessionConfig
from session_service.search.config import SearchConfig

ANONYMOUS = {"AUTH_MODE": "off"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("pod-1.internal", False),
    ],
)
def test_loopback_is_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_password_is_found_in_user_info_or_query() -> None:
    assert has_password("redis://:pw@redis:6379/0")
    assert has_password("rediss://app:pw@redis:6379/0")
    assert has_password("redis://redis:6379/0?password=pw")
    assert not has_password("redis://redis:6379/0")
    assert not has_password("redis://app@redis:6379/0")


def test_the_password_file_fills_a_url_without_one(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cr/t@\n")
    assert with_password("redis://redis:6379/0", str(secret)) == "redis://:s3cr%2Ft%40@redis:6379/0"
    assert with_password("redis://:mine@redis:6379/0", str(secret)) == "redis://:mine@redis:6379/0"
    assert with_password("redis://redis:6379/0", "") == "redis://redis:6379/0"
    assert redacted("redis://:s3cr%2Ft%40@redis:6379/0") == "redis://:***@redis:6379/0"
    with pytest.raises(ConfigError, match="REDIS_PASSWORD_FILE"):
        with_password("redis://redis:6379/0", str(tmp_path / "missing"))


def test_exposure_names_every_missing_setting_and_the_override() -> None:
    with pytest.raises(ConfigError) as refused:
        check_exposure(
            "svc", "0.0.0.0", redis_urls=[("REDIS_URL", "redis://r/0")], cluster_secret_file=""
        )
    message = str(refused.value)
    assert "REDIS_URL has no password" in message and "CLUSTER_SECRET_FILE is unset" in message
    assert "ALLOW_INSECURE_NETWORK=true" in message
    check_exposure("svc", "127.0.0.1", redis_urls=[("REDIS_URL", "redis://r/0")])
    check_exposure("svc", "0.0.0.0", redis_urls=[("REDIS_URL", "redis://r/0")], allow=True)
    check_exposure("svc", "0.0.0.0", redis_urls=[("REDIS_URL", "redis://:p@r/0")])


def test_each_service_config_applies_the_check(tmp_path: Path) -> None:
    beyond = {**ANONYMOUS, "BIND_HOST": "10.0.0.5"}
    cluster = tmp_path / "cluster-secret"
    cluster.write_text("c" * 64)
    with pytest.raises(ConfigError, match="REDIS_URL has no password"):
        SessionConfig.from_env({**beyond, "CLUSTER_SECRET_FILE": str(cluster)})
    with pytest.raises(ConfigError, match="CLUSTER_SECRET_FILE"):
        SessionConfig.from_env({**beyond, "REDIS_URL": "redis://:p@r:6379/0"})
    with pytest.raises(ConfigError, match="REDIS_URL has no password"):
        SearchConfig.from_env(beyond)
    with pytest.raises(ConfigError, match="CLUSTER_SECRET_FILE"):
        AiConfig.from_env({**beyond, "OPENAI_BASE_URL": "http://m/v1"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_REDIS_URL has no password"):
        GatewayConfig.from_env({**beyond, "RATE_LIMIT_REDIS_URL": "redis://r:6379/0"})
    secret = tmp_path / "pw"
    secret.write_text("pw")
    cfg = SessionConfig.from_env(
        {**beyond, "CLUSTER_SECRET_FILE": str(cluster), "REDIS_PASSWORD_FILE": str(secret)}
    )
    assert cfg.redis_url == "redis://:pw@127.0.0.1:6379/0"
    assert SearchConfig.from_env({**beyond, "ALLOW_INSECURE_NETWORK": "true"}).bind_host
    assert GatewayConfig.from_env(beyond).bind_host == "10.0.0.5"  # no Redis: nothing to protect


def test_dev_login_is_refused_beyond_loopback(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("k" * 64)
    cluster = tmp_path / "cluster-secret"
    cluster.write_text("c" * 64)
    env = {
        "AUTH_MODE": "jwt",
        "AUTH_SECRET_FILE": str(secret),
        "CLUSTER_SECRET_FILE": str(cluster),
        "AUTH_DEV_LOGIN": "true",
    }
    assert GatewayConfig.from_env(env).dev_login
    with pytest.raises(ConfigError, match=r"AUTH_DEV_LOGIN=true .* BIND_HOST=0\.0\.0\.0"):
        GatewayConfig.from_env({**env, "BIND_HOST": "0.0.0.0"})
    with pytest.raises(ConfigError, match="AUTH_ISSUER"):
        GatewayConfig.from_env({**env, "AUTH_ISSUER": "https://id.example/"})
    with pytest.raises(ConfigError, match="AUTH_DEV_LOGIN must be a boolean"):
        GatewayConfig.from_env({**env, "AUTH_DEV_LOGIN": "maybe"})


def test_allowed_hosts_default_and_parsing() -> None:
    assert GatewayConfig.from_env(ANONYMOUS).allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    hosts = GatewayConfig.from_env({**ANONYMOUS, "ALLOWED_HOSTS": "Chat.Example.com, .corp"})
    assert hosts.allowed_hosts == ("chat.example.com", ".corp")
    for bad in ("chat.example.com:443", "http://x", "[nope]", "a b"):
        with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
            GatewayConfig.from_env({**ANONYMOUS, "ALLOWED_HOSTS": bad})


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("localhost:8000", True),
        ("LOCALHOST", True),
        ("127.0.0.1:8080", True),
        ("[::1]:8000", True),
        ("localhost.:8000", True),
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_host_header_is_matched_without_its_port(header: str, allowed: bool) -> None:
    default = parse_allowed_hosts("localhost,127.0.0.1,[::1]")
    assert is_allowed(host_name(header), default) is allowed


def test_subdomain_and_wildcard_entries() -> None:
    corp = parse_allowed_hosts(".corp.example")
    assert is_allowed("corp.example", corp) and is_allowed("chat.corp.example", corp)
    assert not is_allowed("evilcorp.example", corp)
    assert is_allowed("anything", parse_allowed_hosts("*"))


def test_jwks_needs_issuer_and_audience() -> None:
    env = {"AUTH_MODE": "jwt", "AUTH_JWKS_URL": "https://id.example/jwks"}
    with pytest.raises(ValueError, match="AUTH_ISSUER and AUTH_AUDIENCE"):
        AuthConfig.from_env(env)
    with pytest.raises(ValueError, match="AUTH_ISSUER and AUTH_AUDIENCE"):
        AuthConfig.from_env({**env, "AUTH_ISSUER": "https://id.example/"})
    cfg = AuthConfig.from_env({**env, "AUTH_ISSUER": "https://id.example/", "AUTH_AUDIENCE": "dc"})
    assert (cfg.issuer, cfg.audience) == ("https://id.example/", "dc")


def test_cookie_is_secure_only_over_https_or_from_a_trusted_proxy() -> None:
    login = DevLogin(b"k" * 64, parse_networks("10.0.0.0/8"))

    def request(peer: str, proto: str) -> bool:
        headers = {"X-Forwarded-Proto": proto} if proto else {}
        req = make_mocked_request("POST", "/api/login", headers=headers)
        req._transport_peername = (peer, 1234)
        return login.over_https(req)

    assert request("10.1.2.3", "https")
    assert not request("10.1.2.3", "http")
    assert not request("10.1.2.3", "")
    assert not request("203.0.113.9", "https")  # a client's own header is not believed


@pytest.mark.parametrize(
    "line",
    [
        "authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl",
        "Client protocols ['bearer.opaque-token-value', 'durablechat'] don't overlap",
        "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl in a field",
    ],
)
def test_log_lines_lose_their_tokens(line: str) -> None:
    cleaned = redact(line)
    assert "[redacted]" in cleaned
    assert "c2lnbmF0dXJl" not in cleaned and "opaque-token-value" not in cleaned
    assert (
        redact("needs `authorization: Bearer <token>`") == "needs `authorization: Bearer <token>`"
    )
