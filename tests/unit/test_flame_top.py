"""bench/flame_top.py: self and total shares from the frames of a py-spy flame graph."""

from __future__ import annotations

from bench.flame_top import costs, frames


def frame(title: str, y: int, x: int, w: int) -> str:
    return f'<g><title>{title} (1 samples, 1%)</title><rect x="0%" y="{y}" fg:x="{x}" fg:w="{w}"/>'


# all(10) -> main(10) -> parse(6) -> loads(4); main -> send(3); main itself 1.
SVG = "".join(
    [
        frame("all", 52, 0, 10),
        frame("main (app.py:3)", 68, 0, 10),
        frame("parse (app.py:9)", 84, 0, 6),
        frame("loads (json.py:1)", 100, 0, 4),
        frame("send (app.py:20)", 84, 6, 3),
    ]
)


def test_self_is_a_frames_width_less_its_childrens() -> None:
    samples, own, total = costs(frames(SVG))

    assert samples == 10
    assert own == {
        "main (app.py)": 1,
        "parse (app.py)": 2,
        "loads (json.py)": 4,
        "send (app.py)": 3,
    }
    assert total["main (app.py)"] == 10
    assert total["parse (app.py)"] == 6


def test_a_recursive_function_counts_once_in_total() -> None:
    svg = "".join(
        [
            frame("all", 52, 0, 4),
            frame("walk (t.py:1)", 68, 0, 4),
            frame("walk (t.py:2)", 84, 0, 4),
        ]
    )

    _, own, total = costs(frames(svg))

    assert total["walk (t.py)"] == 4
    assert own["walk (t.py)"] == 4
