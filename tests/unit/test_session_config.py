"""Session-service configuration: defaults, overrides, errors naming the variable."""

from __future__ import annotations

import pytest

from common.config import ConfigError
from session_service.config import Config

ANONYMOUS = {"AUTH_MODE": "off"}
"""The tests of other settings run without access control (it needs a key file)."""


def test_defaults_are_the_documented_ports_and_limits():
    cfg = Config.from_env(ANONYMOUS)
    assert (cfg.port, cfg.ai_service_addr) == (50051, "127.0.0.1:50052")
    assert cfg.limits.max_content_bytes == 65536
    assert (cfg.limits.answer_batch_chunks, cfg.limits.answer_batch_ms) == (32, 20)


def test_overrides_are_read():
    cfg = Config.from_env(
        {**ANONYMOUS, "SESSION_PORT": "6000", "SESSION_IDLE_MS": "250", "MAX_PAGE_SIZE": "7"}
    )
    assert (cfg.port, cfg.session_idle_ms, cfg.limits.max_page_size) == (6000, 250, 7)
    assert Config.from_env({**ANONYMOUS, "ANSWER_BATCH_MS": "0"}).limits.answer_batch_ms == 0


@pytest.mark.parametrize(
    ("name", "value"), [("SESSION_PORT", "x"), ("SESSION_IDLE_MS", "0"), ("ANSWER_BATCH_MS", "-1")]
)
def test_bad_values_fail_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({**ANONYMOUS, name: value})


def test_access_control_is_on_by_default_and_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE=jwt \\(the default\\) needs AUTH_SECRET_FILE"):
        Config.from_env({})


def test_footprint_limits_have_finite_defaults_and_are_read():
    d = Config.from_env(ANONYMOUS)
    assert (d.limits.max_log_bytes, d.limits.max_log_events) == (64 * 2**20, 100_000)
    assert (d.limits.max_sessions_per_user, d.limits.max_import_bytes) == (10_000, 16 * 2**20)
    assert d.max_attachment_bytes_per_user == 2**30
    cfg = Config.from_env(
        {
            **ANONYMOUS,
            "MAX_LOG_BYTES": "1",
            "MAX_LOG_EVENTS": "2",
            "MAX_SESSIONS_PER_USER": "3",
            "MAX_IMPORT_BYTES": "4",
            "MAX_ATTACHMENT_BYTES_PER_USER": "5",
        }
    )
    limits = cfg.limits
    assert (limits.max_log_bytes, limits.max_log_events, limits.max_sessions_per_user) == (1, 2, 3)
    assert (limits.max_import_bytes, cfg.max_attachment_bytes_per_user) == (4, 5)
    with pytest.raises(ConfigError, match="MAX_SESSIONS_PER_USER"):
        Config.from_env({**ANONYMOUS, "MAX_SESSIONS_PER_USER": "0"})
