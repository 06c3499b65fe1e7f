"""AI-service config: defaults, overrides, and start-up errors that name the variable."""

from __future__ import annotations

import pytest

from ai_service.config import Config
from common.config import ConfigError

DEV = {"OPENAI_BASE_URL": "http://127.0.0.1:8090/v1", "AUTH_MODE": "off"}


def test_defaults_with_a_dev_model_url() -> None:
    cfg = Config.from_env(DEV)

    assert cfg == Config(
        bind_host="127.0.0.1",
        port=50052,
        openai_base_url="http://127.0.0.1:8090/v1",
        openai_api_key="dev",
        openai_model="durablechat-dev-model",
        max_tokens=1024,
        request_timeout_ms=60_000,
        batch_max_chunks=32,
        log_level="INFO",
    )


def test_every_variable_overrides_its_default() -> None:
    cfg = Config.from_env(
        {
            "BIND_HOST": "0.0.0.0",
            "ALLOW_INSECURE_NETWORK": "true",
            "AI_PORT": "0",
            "OPENAI_API_KEY": "sk-real",
            "OPENAI_MODEL": "gpt-test",
            "AI_MAX_TOKENS": "7",
            "AI_REQUEST_TIMEOUT_MS": "250",
            "AI_BATCH_MAX_CHUNKS": "1",
            "LOG_LEVEL": "debug",
            "AUTH_MODE": "off",
            "ANSWER_CONTINUE": "prefill",
        }
    )

    assert cfg == Config(
        bind_host="0.0.0.0",
        allow_insecure_network=True,
        port=0,
        openai_base_url=None,
        openai_api_key="sk-real",
        openai_model="gpt-test",
        max_tokens=7,
        request_timeout_ms=250,
        batch_max_chunks=1,
        log_level="DEBUG",
    )


def test_real_openai_without_a_key_fails_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Config.from_env({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("AI_PORT", "http", id="port-not-int"),
        pytest.param("AI_PORT", "70000", id="port-too-large"),
        pytest.param("AI_MAX_TOKENS", "0", id="max-tokens-zero"),
        pytest.param("AI_REQUEST_TIMEOUT_MS", "1.5", id="timeout-not-int"),
        pytest.param("AI_BATCH_MAX_CHUNKS", "0", id="batch-zero"),
        pytest.param("AI_BATCH_MAX_MS", "10", id="batch-ceiling-below-floor"),
        pytest.param("AI_HTTP_CLIENT", "requests", id="http-client-unknown"),
        pytest.param("AI_BATCH_US_PER_STREAM", "-1", id="batch-widening-negative"),
        pytest.param("LOG_LEVEL", "chatty", id="log-level-unknown"),
        pytest.param("ANSWER_CONTINUE", "append", id="answer-continue-unknown"),
    ],
)
def test_bad_value_fails_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({**DEV, name: value})


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param({}, "prefill", id="dev-model-continues"),
        pytest.param({"OPENAI_MODEL": "gpt-4o-mini"}, "restart", id="other-models-restart"),
        pytest.param(
            {"OPENAI_MODEL": "gpt-4o-mini", "ANSWER_CONTINUE": "prefill"}, "prefill", id="set"
        ),
        pytest.param({"ANSWER_CONTINUE": "restart"}, "restart", id="dev-model-set-restart"),
    ],
)
def test_answer_continue_defaults_to_restart_unless_the_model_is_known_to_continue(
    model: dict[str, str], expected: str
) -> None:
    assert Config.from_env({**DEV, **model}).answer_continue == expected
