"""The top costs in py-spy flame graphs (`python -m bench.flame_top FILE.svg...`): per function,
its own samples (self) and the samples of the stacks it is on (total), as a share of all.

Reads the frames py-spy writes into its SVG (`fg:x`, `fg:w` in samples, `y` the depth); a
function's self share is its frames' width less their children's. Line numbers are dropped, so
one function called from several lines counts once; a function on a stack twice (recursion)
counts once in total.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(
    r'<g><title>(?P<title>[^<]*)</title><rect [^>]*?y="(?P<y>\d+(?:\.\d+)?)"[^>]*?'
    r'fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"'
)
SAMPLES = re.compile(r" \([\d,]+ samples?, [\d.]+%\)$")
LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Frame:
    name: str
    depth: float
    x: int
    w: int


def frames(svg: str) -> list[Frame]:
    found = []
    for m in FRAME.finditer(svg):
        title = SAMPLES.sub("", m["title"].replace("&lt;", "<").replace("&gt;", ">"))
        name = LINE.sub(")", title)
        found.append(Frame(name, float(m["y"]), int(m["x"]), int(m["w"])))
    return found


def costs(found: list[Frame]) -> tuple[int, Counter[str], Counter[str]]:
    """(all samples, self samples by function, total samples by function)."""
    by_depth: dict[float, list[Frame]] = {}
    for f in found:
        by_depth.setdefault(f.depth, []).append(f)
    depths = sorted(by_depth)
    if not depths:
        return 0, Counter(), Counter()
    step = min(b - a for a, b in itertools.pairwise(depths)) if len(depths) > 1 else 16
    # py-spy draws an icicle: the root ("all") on top, each callee one step further down.
    root = depths[0]
    samples = sum(f.w for f in by_depth[root])
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for f in found:
        if f.depth == root:
            continue
        children = [c for c in by_depth.get(f.depth + step, []) if f.x <= c.x < f.x + f.w]
        own[f.name] += f.w - sum(c.w for c in children)
        if not _ancestor_named(f, by_depth, step, root):
            total[f.name] += f.w
    return samples, own, total


def _ancestor_named(f: Frame, by_depth: dict[float, list[Frame]], step: float, root: float) -> bool:
    depth = f.depth - step
    while depth > root:
        parent = next((p for p in by_depth.get(depth, []) if p.x <= f.x < p.x + p.w), None)
        if parent is None:
            return False
        if parent.name == f.name:
            return True
        depth -= step
    return False


def report(path: Path, top: int) -> str:
    samples, own, total = costs(frames(path.read_text()))
    lines = [f"{path.name}: {samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"  top {title}:")
        for name, n in counter.most_common(top):
            lines.append(f"    {100 * n / max(1, samples):5.1f}%  {name}")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("svg", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.svg:
        print(report(path, args.top))


if __name__ == "__main__":
    cli()
