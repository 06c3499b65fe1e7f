"""The fan-out's replay equals the owner's: for every cursor, at every point of a session's life,
EventWindow gives the encoded events a Subscribe to the owner would give (gateway/event_window.py
against session_service/log/session.py + rpc/convert.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from durablechat.v1 import session_pb2
from gateway.event_window import EventWindow
from session_service.log.events import (
    COMPLETED,
    INTERRUPTED,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    CaughtUp,
    Event,
    LogEvent,
    Message,
    MessageAppended,
    PresenceChanged,
    StateChanged,
)
from session_service.log.session import Session
from session_service.rpc import convert

EPOCH = 7
ONLINE = ("ann", "bob")


def user(seq: int) -> MessageAppended:
    return MessageAppended(seq, 1000 + seq, Message(seq, "user", f"u{seq}", "ann", 1000 + seq))


def ended(seq: int, answer_seq: int, text: str) -> AnswerEnded:
    message = Message(seq, "assistant", text, "", 1000 + seq, "", answer_seq, COMPLETED)
    return AnswerEnded(seq, 1000 + seq, message, "")


def restarted(seq: int, answer_seq: int, text: str) -> AnswerRestarted:
    message = Message(seq, "assistant", text, "", 1000 + seq, "", answer_seq, INTERRUPTED)
    return AnswerRestarted(seq, 1000 + seq, message, "interrupted")


class Owner:
    """A session as its owner holds it, and a window fed by the owner's stream from seq 0."""

    def __init__(self, max_events: int = 1000) -> None:
        self.session = Session("s", EPOCH, 0, 0)
        self.window = EventWindow(max_events)
        for event in self.session.replay(0, 0):
            self.window.apply(self._proto(event))
        self.window.apply(self._proto(PresenceChanged(0, 0, ONLINE)))

    def _proto(self, event: Event) -> session_pb2.SessionEvent:
        return convert.event(event, EPOCH, self.session.tree.parent).event

    def log(self, event: LogEvent) -> None:
        self.session.apply(event)
        self.window.apply(self._proto(event))

    def delta(self, text: str) -> None:
        self.window.apply(self._proto(self.session.add_delta(text)))

    def owner_replay(self, after_seq: int | None, after_offset: int, who: str) -> list[bytes]:
        events: list[Event] = self.session.replay(after_seq, after_offset)
        if who:  # a signed-in subscriber of a user already online gets the list after CaughtUp
            mark = events[-1]
            assert isinstance(mark, CaughtUp)
            events.append(PresenceChanged(mark.seq, mark.offset, ONLINE))
        return [
            convert.event(e, EPOCH, self.session.tree.parent).SerializeToString() for e in events
        ]


def streamed(owner: Owner) -> int:
    answers = owner.session.open_answers
    return len(answers[0].batches) if answers else 0


Step = Callable[[Owner], None]
STEPS: list[Step] = [
    lambda o: o.log(user(1)),
    lambda o: o.log(AnswerStarted(2, 1002, 1)),
    lambda o: o.delta("x"),
    lambda o: o.delta("y"),
    lambda o: o.log(StateChanged(3, 1003, '{"a":1}', 1)),
    lambda o: o.log(user(4)),
    lambda o: o.log(AnswerStarted(5, 1005, 4)),
    lambda o: o.delta("z"),
    lambda o: o.log(ended(6, 2, "xyz")),
    lambda o: o.delta("p"),
    lambda o: o.delta("q"),
    lambda o: o.log(ended(7, 5, "pq")),
    lambda o: o.log(user(8)),
    lambda o: o.log(AnswerStarted(9, 1009, 8)),
    lambda o: o.delta("a"),
    lambda o: o.delta("b"),
    lambda o: o.log(restarted(10, 9, "ab")),
    lambda o: o.delta("c"),
    lambda o: o.log(ended(11, 9, "c")),
]


@pytest.mark.parametrize("who", ["", "ann"], ids=["anonymous", "signed-in"])
def test_replay_from_every_cursor_matches_the_owners_at_every_step(who: str) -> None:
    owner = Owner()
    for step in STEPS:
        step(owner)
        last = owner.session.last_seq
        cursors: list[tuple[int | None, int]] = [(None, 0)]
        cursors += [(seq, offset) for seq in range(last + 1) for offset in range(3)]
        for after_seq, after_offset in cursors:
            got = owner.window.replay(after_seq, after_offset, who)
            if got is None:  # only for a cursor past the batches sent: the owner decides
                assert after_offset > streamed(owner), (after_seq, after_offset)
                continue
            assert got == owner.owner_replay(after_seq, after_offset, who), (
                after_seq,
                after_offset,
            )


def test_a_cursor_older_than_the_window_is_left_to_the_owner() -> None:
    owner = Owner(max_events=3)
    for step in STEPS:
        step(owner)
    assert owner.window.base == owner.session.last_seq - 3
    assert owner.window.replay(owner.window.base - 1, 0, "") is None
    assert owner.window.replay(owner.window.base, 0, "") == owner.owner_replay(
        owner.window.base, 0, ""
    )


def test_a_cursor_ahead_of_the_window_is_left_to_the_owner() -> None:
    owner = Owner()
    for step in STEPS[:4]:  # answer 2 has two batches
        step(owner)
    assert owner.window.replay(owner.session.last_seq + 1, 0, "") is None
    assert owner.window.replay(2, 3, "") is None  # a batch the window has not received


def test_repeats_after_a_resubscription_are_not_passed_on() -> None:
    owner = Owner()
    for step in STEPS[:4]:
        step(owner)
    seq, offset = owner.window.cursor
    assert (seq, offset) == (2, 2)
    for event in owner.session.replay(1, 0):  # a replay from an older cursor: all repeats
        proto = convert.event(event, EPOCH, owner.session.tree.parent).event
        if proto.WhichOneof("kind") != "caught_up":
            assert owner.window.apply(proto) is None


def test_a_new_owner_epoch_restamps_what_the_window_holds() -> None:
    owner = Owner()
    for step in STEPS[:4]:
        step(owner)
    mark = session_pb2.SessionEvent(seq=2, offset=2, epoch=EPOCH + 1)
    mark.caught_up.SetInParent()
    owner.window.apply(mark)
    replay = owner.window.replay(0, 0, "")
    assert replay is not None
    assert {session_pb2.SubscribeResponse.FromString(d).event.epoch for d in replay} == {EPOCH + 1}
