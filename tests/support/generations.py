"""The two kinds of model a kill-mid-answer test runs against (ANSWER_CONTINUE), and what a
watcher may show of an answer: always the beginning of one generation, never two glued."""

from __future__ import annotations

import re

import pytest

KINDS = [
    pytest.param({}, {}, id="prefill"),
    pytest.param({"DEV_MODEL_ANSWERS": "fresh"}, {"ANSWER_CONTINUE": "restart"}, id="restart"),
]
"""(dev model env, AI service env): a model that continues a trailing assistant turn, and one
that answers afresh (the dev model's fresh answers: generation n's words are `g{n}tok{i}`)."""
_WORD = re.compile(r"(g\d+)?tok(\d+)")


def one_generation(text: str) -> bool:
    """Whether `text` is a beginning of one generation: `tok0 tok1 …` or `g{n}tok0 g{n}tok1 …`
    with one n; text of two generations glued together never is."""
    words = text.split()
    matches = [_WORD.fullmatch(w) for w in words]
    if not all(matches):
        return False
    stems = {m.group(1) for m in matches if m}
    indexes = [int(m.group(2)) for m in matches if m]
    return len(stems) <= 1 and indexes == list(range(len(words)))


def generation(n: int, tokens: int) -> str:
    """The whole text of the dev model's n-th fresh answer (0: an answer that continues)."""
    stem = f"g{n}" if n else ""
    return " ".join(f"{stem}tok{i}" for i in range(tokens))


class Shown:
    """The answer text one watcher shows, as it changes: `append` for a batch, `replace` for a
    restart (or a reconnect's whole text). Remembers the first text that was not one
    generation's beginning (`glued`; "" when none was) and how often it was replaced."""

    def __init__(self) -> None:
        self.text = ""
        self.glued = ""
        self.replaced = 0

    def append(self, text: str) -> None:
        self.text += text
        if not self.glued and not one_generation(self.text):
            self.glued = self.text

    def replace(self, text: str = "") -> None:
        self.replaced += 1
        self.text = ""
        self.append(text)
