"""Export of a session whose answer restarted (docs/resume.md, ANSWER_CONTINUE=restart): the
answer's end is exported, its interrupted version and feedback on that version are not."""

from __future__ import annotations

from session_service.features.transfer.export_format import branch_events, export_events
from session_service.log.events import (
    COMPLETED,
    INTERRUPTED,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    FeedbackChanged,
    LogEvent,
    Message,
    MessageAppended,
)

EVENTS: list[LogEvent] = [
    MessageAppended(1, 1, Message(1, "user", "hi", "ann", 1)),
    AnswerStarted(2, 2, 1),
    AnswerRestarted(3, 3, Message(3, "assistant", "g1tok0", "", 3, "", 2, INTERRUPTED), "again"),
    FeedbackChanged(4, 4, 3, "ann", "down", ""),
    AnswerEnded(5, 5, Message(5, "assistant", "g2tok0 g2tok1", "", 5, "", 2, COMPLETED), ""),
]


def test_an_interrupted_version_is_left_out_of_an_export():
    exported = export_events(EVENTS)
    assert [e["type"] for e in exported] == ["message", "answer_started", "answer_ended"]
    assert exported[-1]["content"] == "g2tok0 g2tok1"


def test_a_branch_keeps_the_answer_not_its_interrupted_version():
    kept = branch_events(EVENTS, [1, 5])
    assert [e.seq for e in kept] == [1, 2, 5]
