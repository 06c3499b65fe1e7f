"""Search settings and query cost bounds (session_service/search), and the per-user stream
counter (session_service/rpc/stream_caps.py): pure, no processes."""

from __future__ import annotations

import pytest

from common.config import ConfigError
from session_service.config import Config
from session_service.errors import InvalidArgument
from session_service.rpc.stream_caps import StreamCaps, TooManyStreams
from session_service.search.config import SearchConfig
from session_service.search.index import fts_query

ANONYMOUS = {"AUTH_MODE": "off"}


def test_search_limits_default_and_read_from_the_environment() -> None:
    cfg = SearchConfig.from_env(ANONYMOUS)
    assert (cfg.rate_per_min, cfg.min_term_chars, cfg.query_ms, cfg.readers) == (120, 3, 2000, 2)
    env = {
        **ANONYMOUS,
        "SEARCH_RATE_PER_MIN": "0",
        "SEARCH_MIN_TERM_CHARS": "4",
        "SEARCH_QUERY_MS": "50",
        "SEARCH_READERS": "1",
    }
    cfg = SearchConfig.from_env(env)
    assert (cfg.rate_per_min, cfg.min_term_chars, cfg.query_ms, cfg.readers) == (0, 4, 50, 1)


@pytest.mark.parametrize("name", ["SEARCH_MIN_TERM_CHARS", "SEARCH_QUERY_MS", "SEARCH_READERS"])
def test_bad_search_limits_fail_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SearchConfig.from_env({**ANONYMOUS, name: "0"})


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        pytest.param("a*", "SEARCH_MIN_TERM_CHARS", id="one-letter-prefix"),
        pytest.param("word ab*", "SEARCH_MIN_TERM_CHARS", id="two-letter-prefix"),
        pytest.param(" ".join(f"w{k}" for k in range(21)), "20 different words", id="words"),
        pytest.param("x" * 501, "500 characters", id="length"),
        pytest.param("*", "no words", id="no-words"),
    ],
)
def test_costly_queries_are_refused_naming_the_rule(query: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rule):
        fts_query(query, 3)


def test_bounded_queries_pass_and_repeats_count_once() -> None:
    assert fts_query("abc*", 3) == '"abc"*'
    assert fts_query("a b", 3) == '"a" "b"'  # short whole words are cheap: one doclist each
    assert fts_query(" ".join(["same"] * 50), 3) == '"same"'
    assert fts_query("ab*", 2) == '"ab"*'


def test_stream_cap_counts_per_user_and_frees_on_release() -> None:
    caps = StreamCaps(2)
    assert caps.acquire("ann") and caps.acquire("ann")
    with pytest.raises(TooManyStreams, match="MAX_STREAMS_PER_USER"):
        caps.acquire("ann")
    assert caps.acquire("bob")
    caps.release("ann")
    assert caps.acquire("ann") and caps.open_streams("ann") == 2
    assert not caps.acquire("")  # anonymous: not counted
    assert not StreamCaps(0).acquire("ann")  # 0: no cap


def test_max_streams_per_user_is_a_pod_setting() -> None:
    assert Config.from_env(ANONYMOUS).limits.max_streams_per_user == 100
    cfg = Config.from_env({**ANONYMOUS, "MAX_STREAMS_PER_USER": "5"})
    assert cfg.limits.max_streams_per_user == 5
