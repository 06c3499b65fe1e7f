"""What a bench result holds: runs of one level merged by median with their spread and the
fan-out's delivery lag (bench/repeats.py); the settings it records (bench/environment.py); how
its load clients identify (bench/credentials.py)."""

from __future__ import annotations

from bench.credentials import Credentials
from bench.environment import settings_of
from bench.repeats import merge, with_delivery_lag
from common.auth import AuthConfig, Verifier, new_secret


def test_runs_merge_to_medians_with_the_spread_asked_for_and_every_failure_counted() -> None:
    runs = [
        {"subscribers": 10, "last_done_ms": 300.0, "tokens_per_s_delivered": 9.0, "incomplete": 0},
        {"subscribers": 10, "last_done_ms": 100.0, "tokens_per_s_delivered": 7.0, "incomplete": 2},
        {"subscribers": 10, "last_done_ms": 200.0, "tokens_per_s_delivered": 8.0, "incomplete": 0},
    ]
    row = merge(runs, ("last_done_ms",))
    assert row == {
        "subscribers": 10,
        "last_done_ms": 200.0,
        "last_done_ms_spread": {"min": 100.0, "max": 300.0},
        "tokens_per_s_delivered": 8.0,
        "incomplete": 2,
        "runs": 3,
    }


def test_delivery_lag_is_last_done_minus_that_of_the_smallest_level() -> None:
    rows = [
        {"subscribers": 1, "last_done_ms": 2800.0},
        {"subscribers": 1000, "last_done_ms": 3900.0},
    ]
    lagged = with_delivery_lag(rows)
    assert [r["delivery_lag_ms"] for r in lagged] == [0.0, 1100.0]
    assert {r["lag_vs"] for r in lagged} == {1}


def test_settings_keep_what_changes_a_measure_never_a_secret_and_show_disagreement() -> None:
    environs = {
        "session": [
            {"AUTH_MODE": "jwt", "RATE_USER_PER_MIN": "9", "AUTH_SECRET_FILE": "/k", "HOME": "/"}
        ],
        "gateway": [{"AUTH_MODE": "jwt", "MAX_STREAMS_PER_USER": "5", "CLUSTER_SECRET_FILE": "/c"}],
        "ai": [{"AI_HTTP_CLIENT": "aiohttp", "OPENAI_API_KEY": "sk", "MAX_STREAMS_PER_USER": "7"}],
    }
    assert settings_of(environs) == {
        "AUTH_MODE": "jwt",
        "RATE_USER_PER_MIN": "9",
        "MAX_STREAMS_PER_USER": {"gateway": "5", "ai": "7"},
        "AI_HTTP_CLIENT": "aiohttp",
        "session_pods": 1,
        "search_indexer": False,
    }


def test_load_clients_identify_with_a_token_only_when_access_control_is_on() -> None:
    off = Credentials()
    assert off.ws("ws://h/ws/t", "ann b") == ("ws://h/ws/t?user=ann%20b", ())
    assert off.headers("ann") == {} and off.metadata("ann") == ()
    on = Credentials.from_hex(new_secret().hex())
    url, protocols = on.ws("ws://h/ws/t", "ann")
    token = protocols[1].removeprefix("bearer.")
    assert url == "ws://h/ws/t" and protocols[0] == "durablechat"
    assert on.headers("ann") == {"Authorization": f"Bearer {token}"}
    assert on.metadata("ann") == (("authorization", f"Bearer {token}"),)
    assert on.secret is not None
    assert Verifier(AuthConfig("jwt", on.secret)).user(f"Bearer {token}") == "ann"
