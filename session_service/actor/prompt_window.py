"""What the model is shown for a prompt: the session's history trimmed to a token budget.

System messages always go first; then the newest messages up to and including the prompt,
as many as fit in the budget (the prompt itself always does), oldest first. Tokens are counted
with tiktoken's `cl100k_base` when that library and its encoding are installed, else estimated
as one token per four characters (close for English, generous for code).

A long thread's owner may hold only its recent messages (log/snapshot.py): `window_of` then reads
what the budget can still take from Redis, never the whole history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache

from session_service.log.events import Message
from session_service.log.session import Session

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


OLDER_CHUNK = 64
"""Messages read per Redis round trip when the window reaches before a windowed image's."""


async def window_of(
    session: Session,
    prompt_seq: int,
    budget_tokens: int,
    read: Callable[[list[int]], Awaitable[list[Message]]],
) -> list[Message]:
    """`trim(session.history_until(prompt_seq), budget_tokens)`, for a windowed image too
    (log/snapshot.py): messages before its window are read with `read` (from Redis, not kept),
    the branch's system messages and then the newest others, a chunk at a time, only until the
    budget is spent. Trim keeps the newest messages and stops at the first that does not fit,
    so once one is left out no older one can matter: the result is the whole log's."""
    history, whole = session.recent_history(prompt_seq)
    window = trim(history, budget_tokens)
    if whole or (len(window) < len(history) and not session.system_before_window(prompt_seq)):
        return window
    older = session.path_before_window(prompt_seq)
    systems = set(session.system_seqs).intersection(older)
    rest = [seq for seq in older if seq not in systems]
    loaded = await read(sorted(systems)) if systems else []
    while True:
        candidate = sorted(loaded, key=lambda m: m.seq) + history
        candidate = [m for m in candidate if m.role != "assistant" or m.content]
        window = trim(candidate, budget_tokens)
        if not rest or len(window) < len(candidate):
            return window
        chunk, rest = rest[-OLDER_CHUNK:], rest[:-OLDER_CHUNK]
        loaded += await read(chunk)
