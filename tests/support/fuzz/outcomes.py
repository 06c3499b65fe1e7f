"""Every outcome the fuzzers saw, by surface, for the run's summary (conftest prints it)."""

from __future__ import annotations

from collections import Counter

SEEN: Counter[tuple[str, str]] = Counter()


def record(surface: str, outcome: str) -> None:
    """Counts one answer, e.g. ("grpc UpdateState", "INVALID_ARGUMENT") or ("rest PUT", "400")."""
    SEEN[surface, outcome] += 1


def summary() -> list[str]:
    lines: list[str] = []
    for surface in sorted({s for s, _ in SEEN}):
        counts = sorted((o, n) for (s, o), n in SEEN.items() if s == surface)
        lines.append(f"{surface}: " + ", ".join(f"{o} x{n}" for o, n in counts))
    return lines
