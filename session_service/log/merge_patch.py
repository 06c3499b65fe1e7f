"""JSON merge patch (RFC 7386) and strict JSON parsing for session state; pure, no I/O.

`apply_patch` returns a new object and never mutates its inputs; unchanged subtrees are shared,
so a small patch to a large state costs time in proportion to the patch, not the state.
"""

from __future__ import annotations

import json
import math
from typing import Any


class BadJson(ValueError):
    """Text that is not strict JSON (NaN/Infinity are refused, as is nesting beyond the limit)."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"{text[:20]} is out of range for a JSON number (64-bit float)")
    return value


def parse_json(text: str) -> Any:
    """Parses strict JSON text: no NaN/Infinity (literal or overflowing), integers of at most
    4300 digits, strings of valid Unicode only (no lone surrogates), so what is accepted can
    always be written back and read again."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        dump_json(value).encode()  # a lone surrogate (escaped in the input) cannot be UTF-8
        return value
    except RecursionError as exc:
        raise BadJson("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BadJson(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeEncodeError as exc:
        raise BadJson("JSON strings must be valid Unicode (a lone surrogate is not)") from exc
    except BadJson:
        raise
    except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise BadJson(f"invalid JSON: {str(exc)[:120]}") from exc


def dump_json(value: Any) -> str:
    """Compact, key-order-preserving JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def apply_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_patch(result.get(key), value)
    return result
