"""bench/readme.py: README's performance table made from bench results, between its markers;
and the tail names of bench/stats.py (no p99 from fewer than 200 samples or 5 runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import readme
from bench.environment import ROOT
from bench.stats import latency_ms, percentiles_ms, tail_name

BASELINE = json.loads(readme.BASELINE.read_text())


def paced_level(n: int, first_p99: float) -> dict[str, object]:
    return {
        "answers": n,
        "first_token_p50_ms": 120.0,
        "first_token_p99_ms": first_p99,
        "first_token_max_ms": first_p99 + 10,
        "first_token_p99_ms_spread": {"min": first_p99 - 5, "max": first_p99 + 5},
        "gap_p50_ms": 20.0,
        "gap_p99_ms": 180.0,
        "gap_max_ms": 400.0,
        "whole": f"{3 * n}/{3 * n}",
        "cpu_us_per_token_ai": 20.0,
        "cpu_us_per_token_session": 10.0,
        "cpu_us_per_token_gateway": 5.0,
        "cpu_us_per_token_redis": 2.0,
        "cpu_us_per_token_client": 9.0,
        "cpu_us_per_token_ours": 37.0,
    }


def result(config: str, sha: str, rest_rate: float) -> dict[str, object]:
    return {
        "config": config,
        "git_sha": sha,
        "dirty": False,
        "started": "2026-12-03 16:00:00 UTC",
        "machine": "2 cores, 24 GiB, Linux",
        "load_avg_1m_at_start": 0.5,
        "target": "own stack on free ports",
        "quick": False,
        "scenarios": {
            "h_paced_answers": {"levels": [paced_level(100, 300.0), paced_level(1000, 900.0)]},
            "i_rest_appends": {
                "appends_per_s": rest_rate,
                "appends_per_s_spread": {"min": rest_rate - 100, "max": rest_rate + 100},
                "p50_ms": 12.0,
                "p99_ms": 40.0,
            },
            "e_cold_connect_ws": {"p50_ms": 5.5, "p95_ms": 9.0},
            "j_activation": {
                "answers": 1000,
                "before": {"activation_p50_ms": 73.0, "activation_max_ms": 80.0},
                "after": {
                    "activation_p50_ms": 12.0,
                    "activation_max_ms": 15.0,
                    "pod_rss_peak_kb": 102400,
                },
            },
            "c_fan_out_ws": [
                {"subscribers": 1, "tokens_per_s_delivered": 180.0, "last_done_ms": 2800.0},
                {
                    "subscribers": 1000,
                    "tokens_per_s_delivered": 130000.0,
                    "last_done_ms": 3900.0,
                    "delivery_lag_ms": 1100.0,
                },
            ],
        },
    }


def rows(block: str) -> dict[str, list[str]]:
    """The table's rows by workload, each as its cells."""
    found = {}
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith("| workload"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            found[cells[0]] = cells[1:]
    return found


def workload(row_id: str) -> str:
    return str(next(r["workload"] for r in BASELINE["rows"] if r["id"] == row_id))


def test_the_table_has_before_both_configurations_and_target_for_every_baseline_row() -> None:
    block = readme.table(
        {
            "auth-off": result("auth-off", "abc1234", 6000.0),
            "default": result("default", "abc1234", 5200.0),
        },
        BASELINE,
    )
    table = rows(block)
    assert set(table) == {r["workload"] for r in BASELINE["rows"]}
    header = next(line for line in block.splitlines() if line.startswith("| workload"))
    assert header.index("access control on") < header.index("AUTH_MODE=off")  # default first
    before, on, off, target = table[workload("rest_appends")]
    assert before == "978 per s, p99 354 ms" and target == "≥ 5,000 per s"
    assert on.startswith("5,200 per s (runs 5,100 to 5,300)") and "p99 40 ms" in on
    assert off.startswith("6,000 per s")
    paced = table[workload("paced")][1]
    assert "N=1,000: first token p50 120 ms, p99 900 ms (runs' p99 895 ms to 905 ms)" in paced
    assert "gap p99 180 ms" in paced and "whole 3000/3000" in paced
    assert table[workload("cpu_per_token")][1].startswith("N=100 / 1,000: 37 / 37 µs")
    assert table[workload("cold_thread")][1] == "p50 5.5 ms, p95 9 ms"
    assert "lag 1.1 s" in table[workload("fan_out_ws")][1]
    assert table[workload("round_trip_ws")][1] == readme.NOT_MEASURED
    assert table[workload("activation")][1] == (
        "1,000 answered prompts: p50 12 ms, max 15 ms; whole log p50 73 ms; pod RSS peak 100 MB"
    )
    assert "abc1234" in block and "2 cores, 24 GiB, Linux" in block


def test_rewrite_replaces_only_the_block_between_the_markers() -> None:
    text = f"# x\n\n## Performance\n\n{readme.BEGIN}\nold table\n{readme.END}\n\nafter\n"
    new = readme.rewrite(text, "new table\n")
    assert new == f"# x\n\n## Performance\n\n{readme.BEGIN}\nnew table\n{readme.END}\n\nafter\n"
    assert readme.rewrite(new, "new table\n") == new


def test_rewrite_without_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="bench:begin"):
        readme.rewrite("# no markers\n", "table\n")


def test_quick_results_are_refused(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    quick = {**result("default", "abc1234", 1.0), "quick": True}
    (tmp_path / "default" / "results.json").write_text(json.dumps(quick))
    with pytest.raises(ValueError, match="--quick"):
        readme.load(tmp_path, allow_quick=False)
    assert set(readme.load(tmp_path, allow_quick=True)) == {"default"}


def test_the_readme_has_the_markers() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index(readme.BEGIN) < text.index(readme.END)


@pytest.mark.parametrize(
    ("samples", "runs", "name"),
    [
        pytest.param(10, 1, "max", id="10-samples"),
        pytest.param(100, 1, "p95", id="100-samples"),
        pytest.param(200, 1, "p99", id="200-samples"),
        pytest.param(50, 5, "p99", id="5-runs"),
    ],
)
def test_a_tail_is_called_p99_only_with_200_samples_or_5_runs(
    samples: int, runs: int, name: str
) -> None:
    assert tail_name(samples, runs) == name
    values = [i / 1000 for i in range(samples)]
    found = percentiles_ms("x", values, runs)
    assert ("x_p99_ms" in found) == (name == "p99")
    assert ("p99_ms" in latency_ms(values, runs)) == (name == "p99")


def test_the_owner_cpu_row_gives_the_whole_delivery_and_until_the_answer_was_sent() -> None:
    web = [
        {
            "subscribers": n,
            "owner_cpu_us_per_token": whole,
            "owner_cpu_us_per_token_until_sent": sent,
        }
        for n, whole, sent in ((1, 620, 620), (1000, 800, 540), (5000, 3840, 620))
    ]
    text = readme.fan_out_owner_cpu({"g_fan_out_grpc_web_envoy": web})

    assert text == (
        "gRPC-web via Envoy, 1 / 1,000 / 5,000 subscribers: 620 / 800 / 3,840 µs over the whole"
        " delivery, 620 / 540 / 620 µs until the owner had sent the answer"
    )
