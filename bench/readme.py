"""`python -m bench.readme` (`make bench-readme`, and the end of `make bench`): README's
performance table, made from bench/results/<config>/results.json and bench/baseline_issue17.json.

It rewrites only what lies between the markers `<!-- bench:begin -->` and `<!-- bench:end -->`
in README.md: a stamp (git SHA, dirty or not, machine, when, per configuration) and one row per
workload: before (issue 17's figures, typed from the issue into the baseline file), at HEAD with
access control on, at HEAD with AUTH_MODE=off, target. A figure this run did not measure says
so. Results of a `--quick` run are refused (a smoke run's numbers are not a benchmark) unless
`--allow-quick`. Missing markers or no results: an error naming what is missing, README
untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.environment import ROOT

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
RESULTS = ROOT / "bench" / "results"
BASELINE = ROOT / "bench" / "baseline_issue17.json"
COLUMNS = {"default": "at HEAD, access control on", "auth-off": "at HEAD, `AUTH_MODE=off`"}
NOT_MEASURED = "not measured"

Result = dict[str, Any]


def ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def num(value: float) -> str:
    return f"{value:,.0f}"


def tail(row: Result, what: str) -> str:
    """`what`'s tail as the row names it: "p99 1.2 s", else "p95 …", else "max …"."""
    for name in ("p99", "p95", "max"):
        key = f"{what}_{name}_ms" if what else f"{name}_ms"
        if key in row:
            return f"{name} {ms(row[key])}"
    return ""


def spread(row: Result, what: str) -> str:
    for key, value in row.items():
        if key.startswith(f"{what}_") and key.endswith("_ms_spread"):
            name = key.removeprefix(f"{what}_").removesuffix("_ms_spread")
            return f" (runs' {name} {ms(value['min'])} to {ms(value['max'])})"
    return ""


def paced(s: Result) -> str:
    levels = (s.get("h_paced_answers") or {}).get("levels") or []
    parts = [
        f"N={num(r['answers'])}: first token p50 {ms(r['first_token_p50_ms'])}, "
        f"{tail(r, 'first_token')}{spread(r, 'first_token')}, gap {tail(r, 'gap')}, "
        f"whole {r['whole']}{missing(r)}"
        for r in levels
    ]
    return ". ".join(parts)


def missing(row: Result) -> str:
    count = row.get("no_first_token", 0)
    return f" ({count} never got a first token: counted at the bench's wait)" if count else ""


def cpu_per_token(s: Result) -> str:
    levels = (s.get("h_paced_answers") or {}).get("levels") or []
    if not levels:
        return ""
    ns = " / ".join(num(r["answers"]) for r in levels)
    ours = " / ".join(num(r["cpu_us_per_token_ours"]) for r in levels)
    top = levels[-1]
    roles = ("ai", "session", "gateway", "redis", "search")
    names = {"ai": "AI", "session": "pod", "gateway": "gateway", "redis": "Redis"}
    split = ", ".join(
        f"{names.get(r, r)} {num(top[f'cpu_us_per_token_{r}'])}"
        for r in roles
        if f"cpu_us_per_token_{r}" in top
    )
    client = top.get("cpu_us_per_token_client")
    load = f"; load client {num(client)}" if client is not None else ""
    return f"N={ns}: {ours} µs (at N={num(top['answers'])}: {split}{load})"


def round_trip_ws(s: Result) -> str:
    rows = s.get("a_prompt_round_trip_ws") or []
    if not rows:
        return ""
    r = max(rows, key=lambda x: x["concurrency"])
    cpu = r.get("cpu_us_per_round_trip_ours")
    cost = f"; {cpu / 1000:.1f} ms CPU per round trip" if cpu is not None else ""
    return f"{r['concurrency']} sessions: {num(r['ops_per_s'])} per s, {tail(r, '')}{cost}"


def rest_appends(s: Result) -> str:
    r = s.get("i_rest_appends")
    if not r:
        return ""
    rates = r["appends_per_s_spread"]
    share = r.get("client_core_share")
    client = f"; load client {share:.0%} of a core" if share is not None else ""
    return (
        f"{num(r['appends_per_s'])} per s (runs {num(rates['min'])} to {num(rates['max'])}), "
        f"p50 {ms(r['p50_ms'])}, {tail(r, '')}{client}"
    )


def cold_thread(s: Result) -> str:
    r = s.get("e_cold_connect_ws")
    return f"p50 {r['p50_ms']:.1f} ms, {tail(r, '')}" if r else ""


def fan_out_owner_cpu(s: Result) -> str:
    found = []
    web = ("g_fan_out_grpc_web_envoy", "gRPC-web via Envoy")
    for key, label in (web, ("g_fan_out_grpc", "gRPC to the pod")):
        rows = [r for r in s.get(key) or [] if "owner_cpu_us_per_token" in r]
        if rows:
            subs = " / ".join(num(r["subscribers"]) for r in rows)
            cpu = " / ".join(num(r["owner_cpu_us_per_token"]) for r in rows)
            text = f"{label}, {subs} subscribers: {cpu} µs"
            if all("owner_cpu_us_per_token_until_sent" in r for r in rows):
                sent = " / ".join(num(r["owner_cpu_us_per_token_until_sent"]) for r in rows)
                text += f" over the whole delivery, {sent} µs until the owner had sent the answer"
            found.append(text)
    return "; ".join(found)


def activation(s: Result) -> str:
    """j) (bench/activation.py): from a snapshot ("after") and from the whole log ("before")."""
    r = s.get("j_activation")
    if not r or "after" not in r:
        return ""
    after, before = r["after"], r.get("before", {})
    whole = f"; whole log p50 {ms(before['activation_p50_ms'])}" if before else ""
    peak = after.get("pod_rss_peak_kb")
    memory = f"; pod RSS peak {peak / 1024:.0f} MB" if peak else ""
    return (
        f"{num(r['answers'])} answered prompts: p50 {ms(after['activation_p50_ms'])}, "
        f"{tail(after, 'activation')}{whole}{memory}"
    )


def fan_out_ws(s: Result) -> str:
    rows = s.get("c_fan_out_ws") or []
    if not rows:
        return ""
    subs = " / ".join(num(r["subscribers"]) for r in rows)
    rate = " / ".join(num(r["tokens_per_s_delivered"]) for r in rows)
    done = " / ".join(ms(r["last_done_ms"]) for r in rows)
    lag = ms(rows[-1].get("delivery_lag_ms", 0))
    return f"{subs}: {rate} tokens/s delivered; last `[DONE]` {done} (lag {lag})"


def idle_sockets(s: Result) -> str:
    rows = [r for r in s.get("d_idle_sockets") or [] if "rss_per_socket_kb" in r]
    if not rows:
        return ""
    counts = " / ".join(num(r["sockets"]) for r in rows)
    return f"{counts}: " + " / ".join(f"{r['rss_per_socket_kb']:.1f}" for r in rows) + " kB"


def unmeasured(s: Result) -> str:
    return ""


AT_HEAD: dict[str, Callable[[Result], str]] = {
    "paced": paced,
    "cpu_per_token": cpu_per_token,
    "round_trip_ws": round_trip_ws,
    "rest_appends": rest_appends,
    "cold_thread": cold_thread,
    "fan_out_owner_cpu": fan_out_owner_cpu,
    "activation": activation,
    "fan_out_ws": fan_out_ws,
    "idle_sockets": idle_sockets,
}
"""Each baseline row's id and how its "at HEAD" cell is made from one configuration's scenarios."""


def ordered(results: dict[str, Result]) -> list[str]:
    """The configurations, the default (access control on) first."""
    return [c for c in COLUMNS if c in results] + [c for c in results if c not in COLUMNS]


def stamp(results: dict[str, Result], baseline: Result) -> str:
    lines = []
    for config in ordered(results):
        r = results[config]
        sha = r["git_sha"] + (" (uncommitted changes)" if r.get("dirty") else "")
        lines.append(
            f"- {COLUMNS.get(config, config)}: `make bench` at {sha}, {r['started']}, on "
            f"{r['machine']} (load average {r.get('load_avg_1m_at_start', '?')} at start), "
            f"against {r['target']}"
        )
    note = baseline.get("note", "")
    return (
        "Generated by `python -m bench.readme` from bench/results; do not edit by hand.\n\n"
        + "\n".join(lines)
        + f"\n- before: {note}\n"
    )


def cell(text: str) -> str:
    return (text or NOT_MEASURED).replace("|", "\\|")


def table(results: dict[str, Result], baseline: Result) -> str:
    """The block between the markers: stamp, then the table."""
    configs = ordered(results)
    head = ["workload", "before", *(COLUMNS.get(c, c) for c in configs), "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in baseline["rows"]:
        make = AT_HEAD.get(row["id"], unmeasured)
        at_head = [cell(make(results[c]["scenarios"])) for c in configs]
        lines.append(
            "| " + " | ".join([row["workload"], row["before"], *at_head, row["target"]]) + " |"
        )
    return stamp(results, baseline) + "\n" + "\n".join(lines) + "\n"


def rewrite(readme: str, block: str) -> str:
    """README with `block` between the markers (the markers kept)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return readme[: start + len(BEGIN)] + "\n" + block + readme[end:]


def load(results_dir: Path, allow_quick: bool) -> dict[str, Result]:
    found: dict[str, Result] = {}
    for path in sorted(results_dir.glob("*/results.json")):
        result = json.loads(path.read_text())
        if result.get("quick") and not allow_quick:
            raise ValueError(f"{path} is from a --quick run: run `make bench` first")
        found[result.get("config", path.parent.name)] = result
    if not found:
        raise ValueError(f"no results under {results_dir}: run `make bench` first")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--allow-quick", action="store_true", help="accept --quick results")
    args = parser.parse_args()
    try:
        block = table(load(args.results, args.allow_quick), json.loads(args.baseline.read_text()))
        args.readme.write_text(rewrite(args.readme.read_text(), block))
    except ValueError as problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"{args.readme}: performance table rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
