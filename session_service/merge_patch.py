"""JSON merge patch (RFC 7386) and strict JSON parsing for session state; pure, no I/O.

`apply_patch` returns a new object and never mutates its inputs; unchanged subtrees are shared,
so a small patch to a large state costs time in proportion to the patch, not the state.
"""

from __future__ import annotations

import json
from typing import Any


class BadJson(ValueError):
    """Text that is not strict JSON (NaN/Infinity are refused, as is nesting beyond the limit)."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


def parse_json(text: str) -> Any:
    """Parses strict JSON text."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise BadJson("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BadJson(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


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
