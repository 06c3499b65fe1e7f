"""What the model is shown for a prompt: the session's history trimmed to a token budget.

System messages always go first; then the newest messages up to and including the prompt,
as many as fit in the budget (the prompt itself always does), oldest first. Tokens are counted
with tiktoken's `cl100k_base` when that library and its encoding are installed, else estimated
as one token per four characters (close for English, generous for code).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from session_service.log.events import Message

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
"""Role and separators per message, as chat formats add them."""


@cache
def token_counter() -> Callable[[str], int]:
    try:
        import tiktoken  # optional: present only where installed with its encoding cached

        encoding = tiktoken.get_encoding("cl100k_base")
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:
        return lambda text: len(text) // CHARS_PER_TOKEN + 1


def trim(history: list[Message], budget_tokens: int) -> list[Message]:
    """`history` ends with the prompt; returns what fits, oldest first."""
    count = token_counter()
    system = [m for m in history if m.role == "system"]
    used = sum(count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in system)
    kept: list[Message] = []
    for message in reversed([m for m in history if m.role != "system"]):
        cost = count(message.content) + MESSAGE_OVERHEAD_TOKENS
        if kept and used + cost > budget_tokens:
            break
        kept.append(message)
        used += cost
    return system + kept[::-1]
