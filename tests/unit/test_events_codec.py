"""Stored log entries decode to exactly the events that were encoded."""

from __future__ import annotations

import dataclasses

import pytest

from session_service.log import events


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
        (
            events.encode_answer_restart(4, "tok0", "again", 9),
            events.AnswerRestarted(
                1,
                9,
                events.Message(1, "assistant", "tok0", "", 9, "", 4, events.INTERRUPTED),
                "again",
            ),
        ),
    ]
    for raw, expected in cases:
        assert events.decode(1, raw) == expected


def test_unknown_kind_is_a_corrupt_log():
    with pytest.raises(ValueError, match="unknown log entry kind"):
        events.decode(3, b'{"k":"?","t":0}')


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(events.encode_message("system", "x", "bob", 5, "c1"), id="message"),
        pytest.param(events.encode_state('{"a":1}', 1, 6, "bob"), id="state"),
        pytest.param(events.encode_answer_start(1, 8), id="answer_started"),
        pytest.param(
            events.encode_answer_end(2, "t", events.CANCELLED, "", 9, cancelled_by="bob"),
            id="answer_ended",
        ),
        pytest.param(events.encode_feedback(3, "bob", events.DOWN, "", 9), id="feedback"),
        pytest.param(events.encode_rename("T", "bob", 9), id="renamed"),
        pytest.param(events.encode_branch(1, "bob", 9), id="branch"),
    ],
)
@pytest.mark.parametrize("importer", ["mallory", ""])
def test_an_imported_entry_names_its_importer_and_keeps_the_rest(raw: bytes, importer: str):
    plain = events.decode(4, raw)
    marked = events.decode(4, events.mark_imported(raw, importer))
    assert events.imported_by_of(plain) is None
    assert events.imported_by_of(marked) == importer
    if isinstance(marked, events.MessageEvent):
        message = dataclasses.replace(marked.message, imported_by=None)
        assert dataclasses.replace(marked, message=message) == plain
    else:
        assert not isinstance(marked, events.AccessChanged)
        assert dataclasses.replace(marked, imported_by=None) == plain
