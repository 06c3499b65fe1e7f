"""Gateway configuration from the environment."""

from __future__ import annotations

import pytest

from common.config import ConfigError
from gateway.config import Config

ANONYMOUS = {"AUTH_MODE": "off"}
"""The tests of other settings run without access control (it needs a key file)."""


def test_defaults():
    cfg = Config.from_env(ANONYMOUS)
    assert cfg == Config(
        port=8080,
        bind_host="127.0.0.1",
        session_service_addr="127.0.0.1:50051",
        grpc_deadline_ms=5000,
        ws_max_message_bytes=1024 * 1024,
        http_max_body_bytes=4 * 1024 * 1024,
        ws_send_queue=1024,
        log_level="INFO",
    )
    assert cfg.grpc_deadline_s == 5.0


def test_values_from_the_environment():
    cfg = Config.from_env(
        {
            **ANONYMOUS,
            "GATEWAY_PORT": "0",
            "SESSION_SERVICE_ADDR": "10.0.0.2:7000",
            "GRPC_DEADLINE_MS": "250",
            "WS_SEND_QUEUE": "8",
            "LOG_LEVEL": "debug",
        }
    )
    assert (cfg.port, cfg.session_service_addr, cfg.grpc_deadline_ms) == (0, "10.0.0.2:7000", 250)
    assert (cfg.ws_send_queue, cfg.log_level) == (8, "DEBUG")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("GATEWAY_PORT", "http", id="port-not-int"),
        pytest.param("GRPC_DEADLINE_MS", "0", id="deadline-zero"),
        pytest.param("WS_SEND_QUEUE", "0", id="queue-zero"),
        pytest.param("HTTP_MAX_BODY_BYTES", "-5", id="body-negative"),
        pytest.param("LOG_LEVEL", "LOUD", id="log-level"),
        pytest.param("MAX_HISTORY_REPLY_BYTES", "10", id="history-reply-tiny"),
        pytest.param("HEADER_READ_TIMEOUT_MS", "0", id="header-timeout-zero"),
        pytest.param("SEND_STALL_TIMEOUT_MS", "-1", id="send-stall-negative"),
        pytest.param("WS_SEND_QUEUE_BYTES", "1048576", id="send-queue-below-a-history-reply"),
    ],
)
def test_bad_value_fails_naming_the_variable(name: str, value: str):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({**ANONYMOUS, name: value})


def test_access_control_is_on_by_default_and_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE=jwt \\(the default\\) needs AUTH_SECRET_FILE"):
        Config.from_env({})


def test_a_send_queue_must_hold_one_history_reply() -> None:
    with pytest.raises(ConfigError, match=r"WS_SEND_QUEUE_BYTES .* MAX_HISTORY_REPLY_BYTES"):
        Config.from_env(
            {**ANONYMOUS, "MAX_HISTORY_REPLY_BYTES": "65536", "WS_SEND_QUEUE_BYTES": "65536"}
        )
    cfg = Config.from_env(
        {**ANONYMOUS, "MAX_HISTORY_REPLY_BYTES": "65536", "WS_SEND_QUEUE_BYTES": "69632"}
    )
    assert (cfg.max_history_reply_bytes, cfg.ws_send_queue_bytes) == (65536, 69632)


def test_fanout_settings():
    assert Config.from_env(ANONYMOUS).fanout_port == 0  # not served unless asked for
    cfg = Config.from_env(
        {
            **ANONYMOUS,
            "FANOUT_PORT": "8081",
            "FANOUT_WINDOW_EVENTS": "50",
            "FANOUT_STREAM_QUEUE": "7",
            "FANOUT_MAX_STREAMS_PER_USER": "0",
        }
    )
    assert (cfg.fanout_port, cfg.fanout_window_events, cfg.fanout_stream_queue) == (8081, 50, 7)
    assert cfg.fanout_max_streams_per_user == 0
    with pytest.raises(ConfigError):
        Config.from_env({**ANONYMOUS, "FANOUT_WINDOW_EVENTS": "0"})
