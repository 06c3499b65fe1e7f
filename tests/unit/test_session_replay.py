"""The resume contract on the in-memory session: from any cursor, everything after it once."""

from __future__ import annotations

from session_service.log.events import (
    COMPLETED,
    INTERRUPTED,
    AnswerDelta,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    CaughtUp,
    Message,
    MessageAppended,
    StateChanged,
)
from session_service.log.session import Session


def user(seq: int) -> MessageAppended:
    return MessageAppended(seq, 0, Message(seq, "user", f"u{seq}", "a", 0))


def ended(seq: int, answer_seq: int, text: str) -> AnswerEnded:
    return AnswerEnded(
        seq, 0, Message(seq, "assistant", text, "", 0, "", answer_seq, COMPLETED), ""
    )


def build() -> Session:
    """Log: 1 user, 2 answer A starts, [A batches x y], 3 state, 4 user, 5 answer B starts."""
    s = Session("s", 1, 0, 0)
    s.apply(user(1))
    s.apply(AnswerStarted(2, 0, 1))
    s.add_delta("x")
    s.add_delta("y")
    s.apply(StateChanged(3, 0, '{"a":1}', 1))
    s.apply(user(4))
    s.apply(AnswerStarted(5, 0, 4))
    return s


def test_cursor_inside_streaming_answer_gets_later_events_and_remaining_batches():
    s = build()
    out = s.replay(after_seq=3, after_offset=1)
    assert out == [user(4), AnswerStarted(5, 0, 4), AnswerDelta(2, 1, "y"), CaughtUp(5, 2)]


def test_cursor_before_answer_start_gets_every_batch():
    s = build()
    out = s.replay(after_seq=1, after_offset=0)
    assert [type(e).__name__ for e in out] == [
        "AnswerStarted",
        "StateChanged",
        "MessageAppended",
        "AnswerStarted",
        "AnswerDelta",
        "AnswerDelta",
        "CaughtUp",
    ]


def test_answer_ended_after_cursor_resets_offset_for_the_next_answer():
    s = build()
    s.apply(ended(6, 2, "xy"))
    s.add_delta("p")
    out = s.replay(after_seq=5, after_offset=2)
    assert out == [ended(6, 2, "xy"), AnswerDelta(5, 0, "p"), CaughtUp(6, 1)]


def restarted(seq: int, answer_seq: int, text: str) -> AnswerRestarted:
    message = Message(seq, "assistant", text, "", 0, "", answer_seq, INTERRUPTED)
    return AnswerRestarted(seq, 0, message, "again")


def test_a_restart_after_the_cursor_resets_the_offset_and_keeps_the_version():
    s = build()
    s.apply(restarted(6, 2, "xy"))
    s.add_delta("p")
    # A cursor inside the first generation gets the restart, then the new batches from 0.
    out = s.replay(after_seq=5, after_offset=2)
    assert out == [restarted(6, 2, "xy"), AnswerDelta(2, 0, "p"), CaughtUp(6, 1)]
    assert s.replay(after_seq=6, after_offset=1) == [CaughtUp(6, 1)]
    # The interrupted text is a message under the prompt, beside where the answer ends.
    s.apply(ended(7, 2, "p"))
    assert s.tree.parent[6] == 1 and s.message_at(6).answer_status == INTERRUPTED
    assert [m.seq for m in s.messages_after(0, 10)[0]] == [1, 4, 7]
    assert [m.seq for m in s.messages_after(0, 10, all_branches=True)[0]] == [1, 4, 6, 7]


def test_from_now_starts_at_the_streaming_answer():
    s = build()
    out = s.replay(after_seq=None, after_offset=7)
    assert out[0] == AnswerStarted(2, 0, 1)
    assert out[-3:] == [AnswerDelta(2, 0, "x"), AnswerDelta(2, 1, "y"), CaughtUp(5, 2)]


def test_from_now_without_an_answer_is_just_caught_up():
    s = Session("s", 1, 0, 0)
    s.apply(user(1))
    assert s.replay(after_seq=None, after_offset=0) == [CaughtUp(1, 0)]


def test_cursor_beyond_the_log_is_clamped():
    s = Session("s", 1, 0, 0)
    s.apply(user(1))
    assert s.replay(after_seq=99, after_offset=0) == [CaughtUp(1, 0)]


def test_messages_after_pages_by_seq():
    s = build()
    page, more = s.messages_after(0, 1)
    assert ([m.seq for m in page], more) == ([1], True)
    page, more = s.messages_after(1, 10)
    assert ([m.seq for m in page], more) == ([4], False)
