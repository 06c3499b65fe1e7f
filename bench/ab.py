"""`python -m bench.ab LABEL=FILE ...`: one markdown table comparing `python -m bench.paced --out`
results, a row per file and level (docs/bench/profiles.md's A/B tables are made by it, from the
JSON files kept beside them).

Each row names its label, the code (git SHA, "+dirty" when the tree had changes: a trial made by
editing the code), the settings that differ from the first file's, and the level's figures:
first token and gap (p50 / tail, the tail named as the results name it), answers whole, wall
time, CPU µs per token per process and "ours" summed, and the load average before the runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PROCESSES = ("ai", "session", "gateway", "redis", "search")


def tail(row: dict[str, Any], what: str) -> str:
    for name in ("p99", "p95", "max"):
        key = f"{what}_{name}_ms"
        if key in row:
            return f"{row[f'{what}_p50_ms']:,.0f} / {name} {row[key]:,.0f}"
    return "-"


def table(labelled: list[tuple[str, dict[str, Any]]]) -> str:
    first = labelled[0][1].get("settings", {})
    lines = [
        "| trial | code | settings changed | N | first token ms | gap ms | whole | wall s "
        "| CPU µs/token AI / pod / gw / Redis / search = ours | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, result in labelled:
        settings = result.get("settings", {})
        changed = (
            ", ".join(f"{k}={v}" for k, v in sorted(settings.items()) if first.get(k) != v) or "-"
        )
        sha = result.get("git_sha", "?")
        for row in result["levels"]:
            cpu = " / ".join(f"{row.get(f'cpu_us_per_token_{p}', 0):.0f}" for p in PROCESSES)
            load = " to ".join(f"{x:.1f}" for x in row.get("load_avg_1m", []))
            lines.append(
                f"| {label} | {sha} | {changed} | {row['answers']} | {tail(row, 'first_token')} "
                f"| {tail(row, 'gap')} | {row['whole']} | {row['wall_s']} "
                f"| {cpu} = {row['cpu_us_per_token_ours']:.0f} | {load} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    labelled = []
    for arg in argv:
        label, _, path = arg.partition("=")
        labelled.append((label, json.loads(Path(path).read_text())))
    print(table(labelled))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
