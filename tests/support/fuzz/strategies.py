"""Hypothesis strategies of hostile input shared by the fuzz modules, and their settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

CONTROL_LOOKALIKES = (
    "[LOADING]",
    "[DONE]",
    "[ERROR]",
    "[ERROR] ",
    "[ERROR] x",
    "(GET_HISTORY)",
    "(CANCEL)",
    "\\",
    "\\\\",
    "\\[DONE]",
    "\\(GET_HISTORY)",
    "\\(CANCEL)",
    "\\\\(CANCEL)",
    "[DONE]\n",
    " [DONE]",
    "data: [DONE]",
)
"""The seed WebSocket's control frames and commands, escaped and not, and near misses."""
LIMIT_LENGTHS = (127, 128, 129, 16_383, 16_384, 16_385, 65_535, 65_536, 65_537)
"""Around the 128-character name limit and the 64 KiB content limit (by characters; the
fillers below make byte lengths of 1 to 4 per character)."""
FILLERS = ("x", "é", "😀", " ", "\x00", "\u2028", "\\")
DIGITS = "0123456789"
INT_DIGITS_LIMIT = 4300
"""CPython's int() refuses longer digit strings (ValueError), the attack on number parsing."""


EXAMPLES = DirectoryBasedExampleDatabase(
    Path(__file__).resolve().parents[2] / "security" / "fuzz-examples"
)
"""The saved examples (committed): every failing example is written here and replayed first on
the next run, before any new input; see fuzz-examples/README.md."""
F = TypeVar("F", bound=Callable[..., Any])


def fuzz(max_examples: int, key: str) -> Callable[[F], F]:
    """Settings of one fuzz run, named `key` in the example database (one name per test and
    parameter: the runs are inner functions, whose source hypothesis would otherwise share).
    No deadline: every example is real calls to real processes, whose latency is the machine's
    load, not the code's. Health checks off: too_slow and the data sizes because examples are
    network calls and large inputs on purpose; function_scoped_fixture because each run is a
    plain function inside the test, not a test with fixtures."""
    chosen = settings(
        max_examples=max_examples,
        deadline=None,
        database=EXAMPLES,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )

    def apply(run: F) -> F:
        run = chosen(run)
        # Hypothesis's own key is a digest of the function's source, alike for every
        # parameter; find() sets this attribute the same way.
        run._hypothesis_internal_database_key = key.encode()  # type: ignore[attr-defined]
        return run

    return apply


def _repeat(pair: tuple[int, str]) -> str:
    return pair[1] * pair[0]


def at_limits(longest: int = LIMIT_LENGTHS[-1]) -> st.SearchStrategy[str]:
    """Strings of one filler character, just under, at and over the size limits."""
    lengths = [n for n in LIMIT_LENGTHS if n <= longest]
    return st.tuples(st.sampled_from(lengths), st.sampled_from(FILLERS)).map(_repeat)


def hostile_text(max_size: int = 64, longest: int = LIMIT_LENGTHS[-1]) -> st.SearchStrategy[str]:
    """Text a protobuf string or a UTF-8 frame can carry, chosen to break parsers: any code
    point, only control/format/space characters, control-frame lookalikes behind any number of
    backslashes, and strings at the size limits up to `longest` characters."""
    lookalike = st.sampled_from(CONTROL_LOOKALIKES)
    odd = st.characters(categories=("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co"))
    return st.one_of(
        st.text(max_size=max_size),
        st.text(alphabet=odd, max_size=max_size),
        lookalike,
        st.tuples(st.text(alphabet="\\", max_size=3), lookalike, st.text(max_size=8)).map("".join),
        at_limits(longest),
    )


def digit_runs() -> st.SearchStrategy[str]:
    """Decimal digit strings of any length, also past CPython's int() limit."""
    return st.tuples(
        st.text(alphabet=DIGITS, max_size=24),
        st.sampled_from(DIGITS),
        st.integers(0, INT_DIGITS_LIMIT + 1_500),
    ).map(lambda t: t[0] + t[1] * t[2])


def uint(bits: int) -> st.SearchStrategy[int]:
    """An unsigned protobuf integer, biased to its ends and to small values."""
    top = 2**bits - 1
    return st.one_of(
        st.integers(0, 3), st.sampled_from([top, top - 1, 2**31, 2**32 - 1]), st.integers(0, top)
    )


def json_numbers() -> st.SearchStrategy[str]:
    """JSON number literals, including ones no double or CPython int can hold."""
    exponent = st.one_of(st.just(""), st.integers(-999, 999).map(lambda e: f"e{e:+d}"))
    fraction = st.one_of(st.just(""), st.text(alphabet=DIGITS, min_size=1, max_size=20))
    return st.tuples(st.sampled_from(["", "-"]), digit_runs(), fraction, exponent).map(
        lambda t: f"{t[0]}{t[1].lstrip('0') or '0'}{'.' + t[2] if t[2] else ''}{t[3]}"
    )


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value; strings may hold lone surrogates (sent as \\uXXXX escapes)."""
    any_text = st.text(alphabet=st.characters(codec=None), max_size=16)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        any_text,
        hostile_text(16),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(any_text, hostile_text(8)), children, max_size=4),
        ),
        max_leaves=16,
    )


def nested_json() -> st.SearchStrategy[str]:
    """Objects and arrays nested up to far past any recursion limit."""
    return st.tuples(st.integers(1, 5_000), st.sampled_from(['{"a":', "["])).map(
        lambda t: t[1] * t[0] + "1" + ("}" if t[1].startswith("{") else "]") * t[0]
    )


def json_text() -> st.SearchStrategy[str]:
    """Text for a JSON field: mostly objects (the state patch shape), any JSON value, numbers
    out of range, deep nesting, and text that is not JSON at all."""
    number_object = st.tuples(st.text(max_size=4), json_numbers()).map(
        lambda t: f"{{{json.dumps(t[0])}: {t[1]}}}"
    )
    return st.one_of(
        st.dictionaries(st.text(max_size=8), json_values(), max_size=4).map(json.dumps),
        json_values().map(json.dumps),
        number_object,
        nested_json(),
        hostile_text(),
    )
