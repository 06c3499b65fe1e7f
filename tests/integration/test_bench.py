"""`python -m bench --quick` end to end on stacks of its own, in both configurations (access
control on, with tokens the load clients mint; AUTH_MODE=off): every scenario reports numbers,
and `python -m bench.readme` makes README's table from what it wrote."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import scenarios
from deploy.stack.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

PER_CONFIG = {
    "a_prompt_round_trip_ws": "ops_per_s",
    "b_history_ws": "p50_ms",
    "c_fan_out_ws": "tokens_per_s_delivered",
    "d_idle_sockets": "rss_per_socket_kb",
    "e_cold_connect_ws": "p50_ms",
    "h_paced_answers": "first_token_p50_ms",
    "i_rest_appends": "appends_per_s",
}
ONCE = {
    "f_kill9_takeover": "acknowledged_writes",
    "baseline_redis": "set_ops_per_s",
    "baseline_grpc_echo": "ops_per_s",
}
AUTH_OFF_ONLY = {
    "g_prompt_round_trip_grpc": "ops_per_s",
    "g_fan_out_grpc": "tokens_per_s_delivered",
}
if "g_fan_out_grpc_web_envoy" in scenarios.AUTH_OFF_ONLY:  # bench/grpc_load.py has it
    AUTH_OFF_ONLY["g_fan_out_grpc_web_envoy"] = "tokens_per_s_delivered"
if importlib.util.find_spec("bench.activation") is not None:
    ONCE["j_activation"] = "answers"
EXPECTED = {"default": PER_CONFIG | ONCE, "auth-off": PER_CONFIG | AUTH_OFF_ONLY}


def rows_of(found: Any) -> list[dict[str, Any]]:
    if isinstance(found, list):
        return found
    assert isinstance(found, dict)
    rows: list[dict[str, Any]] = found.get("levels", [found])
    return rows


def test_quick_bench_writes_every_scenario_with_numbers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--own", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for config, expected in EXPECTED.items():
        results = json.loads((tmp_path / config / "results.json").read_text())
        assert results["config"] == config and results["git_sha"]
        assert results["settings"]["AUTH_MODE"] == ("jwt" if config == "default" else "off")
        scenarios = results["scenarios"]
        assert set(scenarios) == set(expected), config
        for name, measure in expected.items():
            rows = rows_of(scenarios[name])
            assert rows, (config, name)
            for row in rows:
                assert isinstance(row[measure], int | float), (config, name, row)
                # Memory may not grow for a few sockets (pages already mapped); the rest must.
                assert row[measure] > 0 or name == "d_idle_sockets", (config, name, row)
                assert row.get("incomplete", 0) == 0, (config, name, row)
        if "g_fan_out_grpc_web_envoy" in expected:  # the gateway's fan-out through Envoy
            web = scenarios["g_fan_out_grpc_web_envoy"]
            assert [r["subscribers"] for r in web] == [1, 10]
        fan_out = scenarios["c_fan_out_ws"]
        assert [r["subscribers"] for r in fan_out] == [1, 10]
        assert fan_out[0]["delivery_lag_ms"] == 0 and "delivery_lag_ms" in fan_out[1]
        paced = scenarios["h_paced_answers"]
        assert paced["git_sha"] and paced["settings"]["DEV_MODEL_TOKEN_DELAY_MS"] == "20"
        assert paced["levels"][0]["cpu_us_per_token_ai"] > 0
        assert paced["levels"][0]["cpu_us_per_token_client"] > 0
        # 10 answers of one run are no p99: the report names the tail it can tell
        assert "first_token_p99_ms" not in paced["levels"][0]
        for plot in ("round_trip.png", "fan_out.png", "paced.png"):
            assert (tmp_path / config / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        text = (tmp_path / config / "results.md").read_text()
        assert "a) prompt round trip over WebSocket" in text
    kills = scenarios_of(tmp_path, "default")["f_kill9_takeover"]
    assert kills["lost_by_content"] == kills["duplicated"] == kills["misplaced"] == 0
    assert "c) one answer fanned out" in done.stdout


def scenarios_of(out: Path, config: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((out / config / "results.json").read_text())["scenarios"]
    return found
