"""bench/ab.py: the A/B table names each trial's code, what it changed and its figures."""

from __future__ import annotations

from typing import Any

from bench.ab import table


def result(sha: str, settings: dict[str, str], ours: float) -> dict[str, Any]:
    row = {
        "answers": 100,
        "first_token_p50_ms": 380.4,
        "first_token_p99_ms": 1333.5,
        "gap_p50_ms": 60,
        "gap_p95_ms": 119,
        "whole": "200/200",
        "wall_s": 6.4,
        "cpu_us_per_token_ai": 151,
        "cpu_us_per_token_ours": ours,
        "load_avg_1m": [1.6, 1.9],
    }
    return {"git_sha": sha, "settings": settings, "levels": [row]}


def test_rows_name_the_code_the_changed_settings_and_the_tail_the_results_name() -> None:
    text = table(
        [
            ("HEAD", result("abc1234", {"AUTH_MODE": "off"}, 402)),
            (
                "httpx",
                result("abc1234+dirty", {"AUTH_MODE": "off", "AI_HTTP_CLIENT": "httpx"}, 414),
            ),
        ]
    ).splitlines()

    assert text[2].startswith("| HEAD | abc1234 | - | 100 | 380 / p99 1,334 | 60 / p95 119 |")
    assert "| 151 / 0 / 0 / 0 / 0 = 402 | 1.6 to 1.9 |" in text[2]
    assert text[3].startswith("| httpx | abc1234+dirty | AI_HTTP_CLIENT=httpx | 100 |")
    assert text[3].endswith("= 414 | 1.6 to 1.9 |")
