"""`python -m bench --quick` end to end on a stack of its own: every scenario reports numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.stack.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SCENARIOS = {
    "a_prompt_round_trip_ws": "ops_per_s",
    "b_history_ws": "p99_ms",
    "c_fan_out_ws": "tokens_per_s_delivered",
    "d_idle_sockets": "rss_per_socket_kb",
    "e_cold_connect_ws": "p50_ms",
    "f_kill9_takeover": "takeover_ms_p50",
    "g_prompt_round_trip_grpc": "ops_per_s",
    "g_fan_out_grpc": "tokens_per_s_delivered",
    "g_fan_out_grpc_web_envoy": "owner_cpu_us_per_token_until_sent",
    "h_paced_answers": "first_token_p50_ms",
    "baseline_redis": "set_ops_per_s",
    "baseline_grpc_echo": "ops_per_s",
}


def test_quick_bench_writes_every_scenario_with_numbers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--own", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    scenarios = results["scenarios"]
    assert set(scenarios) == set(SCENARIOS)
    for name, measure in SCENARIOS.items():
        found = scenarios[name]
        rows = found if isinstance(found, list) else found.get("levels", [found])
        assert rows, name
        for row in rows:
            assert isinstance(row[measure], int | float), (name, row)
            # Memory may not grow for a few sockets (pages already mapped); the rest must.
            assert row[measure] > 0 or name == "d_idle_sockets", (name, row)
            assert row.get("incomplete", 0) == 0, (name, row)
    assert scenarios["f_kill9_takeover"]["writes_lost"] == 0
    assert [r["subscribers"] for r in scenarios["c_fan_out_ws"]] == [1, 10]
    assert [r["subscribers"] for r in scenarios["g_fan_out_grpc_web_envoy"]] == [1, 10]
    paced = scenarios["h_paced_answers"]
    assert paced["git_sha"] and paced["settings"]["DEV_MODEL_TOKEN_DELAY_MS"] == 20
    assert paced["levels"][0]["cpu_us_per_token_ai"] > 0
    for plot in ("round_trip.png", "fan_out.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "a) prompt round trip over WebSocket" in (tmp_path / "results.md").read_text()
    assert "c) one answer fanned out" in done.stdout
