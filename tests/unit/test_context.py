"""The model's context: system messages first, then the newest messages that fit the budget."""

from __future__ import annotations

from session_service.actor.prompt_window import MESSAGE_OVERHEAD_TOKENS, token_counter, trim
from session_service.log.events import Message


def msg(seq: int, role: str, words: int) -> Message:
    return Message(seq, role, " ".join(["word"] * words), "", 0)


def cost(m: Message) -> int:
    return token_counter()(m.content) + MESSAGE_OVERHEAD_TOKENS


def test_everything_fits_in_a_large_budget():
    history = [msg(1, "system", 5), msg(2, "user", 5), msg(3, "assistant", 5), msg(4, "user", 5)]
    assert trim(history, 10_000) == history


def test_the_oldest_messages_go_first_and_system_messages_stay():
    history = [msg(1, "system", 5)] + [msg(i, "user", 50) for i in range(2, 12)]
    budget = cost(history[0]) + 3 * cost(history[1])
    kept = trim(history, budget)
    assert [m.seq for m in kept] == [1, 9, 10, 11]


def test_the_prompt_is_kept_even_over_budget():
    history = [msg(1, "user", 10), msg(2, "user", 5000)]
    assert [m.seq for m in trim(history, 10)] == [2]
