"""Stored log entries decode to exactly the events that were encoded."""

from __future__ import annotations

import pytest

from session_service import events


def test_every_kind_round_trips():
    cases = [
        (
            events.encode_message("user", "héllo", "ann", 5, "c1"),
            events.MessageAppended(1, 5, events.Message(1, "user", "héllo", "ann", 5, "c1")),
        ),
        (
            events.encode_state('{"a":{"b":[1,2.5,"ü"]}}', 3, 6),
            events.StateChanged(1, 6, '{"a":{"b":[1,2.5,"ü"]}}', 3),
        ),
        (events.encode_answer_start(7, 8), events.AnswerStarted(1, 8, 7)),
        (
            events.encode_answer_end(4, "tok0", events.FAILED, "boom", 9),
            events.AnswerEnded(
                1, 9, events.Message(1, "assistant", "tok0", "", 9, "", 4, events.FAILED), "boom"
            ),
        ),
    ]
    for raw, expected in cases:
        assert events.decode(1, raw) == expected


def test_unknown_kind_is_a_corrupt_log():
    with pytest.raises(ValueError, match="unknown log entry kind"):
        events.decode(3, b'{"k":"?","t":0}')
