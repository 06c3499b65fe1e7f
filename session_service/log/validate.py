"""Input rules shared by every session-service entry point: ids, roles, sizes.

Session ids are 1-128 characters of `[A-Za-z0-9_-]`: no braces (they would break the Redis hash
tag), no separators, safe in URLs and keys. Every rule raises `InvalidArgument` with a message
that names the field; nothing is stored when a rule fails.
"""

from __future__ import annotations

import re
import unicodedata

from session_service.errors import InvalidArgument

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_NAME_CHARS = 128
"""Longest user name and client message id."""

ROLES = frozenset({"user", "assistant", "system"})
MAX_TITLE_CHARS = 200
"""Longest thread title."""
MAX_COMMENT_CHARS = 2000
"""Longest feedback comment."""


def session_id(value: str) -> str:
    if not SESSION_ID_PATTERN.fullmatch(value):
        raise InvalidArgument("session_id must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def content(value: str, max_bytes: int, field: str = "content") -> str:
    if not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(f"{field} is {size} bytes; the limit is {max_bytes}")
    return value


def name(value: str, field: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_NAME_CHARS} characters")
    return value


def role(value: str) -> str:
    if value not in ROLES:
        raise InvalidArgument("role must be user, assistant or system")
    return value


def title(value: str) -> str:
    """A thread title, stripped: 1 to MAX_TITLE_CHARS characters, no control characters."""
    value = value.strip()
    if not value or len(value) > MAX_TITLE_CHARS:
        raise InvalidArgument(f"title must be 1 to {MAX_TITLE_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InvalidArgument("title must not contain control characters")
    return value
