"""ThreadView: session events to seed-000 frames, once each, in order, and the resume cursor."""

from __future__ import annotations

from gateway.frames import (
    DONE,
    LOADING,
    RESTART,
    AnswerDelta,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    CaughtUp,
    Cursor,
    Event,
    Logged,
    ThreadView,
    prompt_text,
)


def ended(seq: int, answer_seq: int, content: str, status: str = "COMPLETED", error: str = ""):
    return AnswerEnded(seq=seq, answer_seq=answer_seq, content=content, status=status, error=error)


def run(view: ThreadView, events: list[Event]) -> list[str]:
    frames: list[str] = []
    for event in events:
        frames.extend(view.apply(event))
    return frames


def caught_up_view() -> ThreadView:
    view = ThreadView()
    assert view.apply(CaughtUp(seq=0, offset=0)) == []
    return view


def test_one_answer_is_loading_deltas_done():
    frames = run(
        caught_up_view(),
        [
            Logged(seq=1),
            AnswerStarted(seq=2),
            AnswerDelta(answer_seq=2, offset=0, text="tok0 "),
            AnswerDelta(answer_seq=2, offset=1, text="tok1"),
            Logged(seq=3),
            ended(4, 2, "tok0 tok1"),
        ],
    )
    assert frames == [LOADING, "tok0 ", "tok1", DONE]


def test_end_sends_the_stored_text_not_yet_streamed():
    frames = run(
        caught_up_view(),
        [AnswerStarted(seq=2), AnswerDelta(2, 0, "tok0 "), ended(3, 2, "tok0 tok1 tok2")],
    )
    assert frames == [LOADING, "tok0 ", "tok1 tok2", DONE]


def test_failed_answer_ends_with_error_then_done():
    frames = run(
        caught_up_view(),
        [AnswerStarted(seq=2), AnswerDelta(2, 0, "tok0"), ended(3, 2, "tok0", "FAILED", "boom")],
    )
    assert frames == [LOADING, "tok0", "[ERROR] boom", DONE]


def test_interrupted_answer_without_error_text_names_its_status():
    frames = run(caught_up_view(), [AnswerStarted(seq=2), ended(3, 2, "", "INTERRUPTED")])
    assert frames == [LOADING, "[ERROR] answer interrupted", DONE]


def test_second_answer_loading_waits_for_first_done():
    frames = run(
        caught_up_view(),
        [
            AnswerStarted(seq=2),
            AnswerDelta(2, 0, "a"),
            Logged(seq=3),
            AnswerStarted(seq=4),
            AnswerDelta(2, 1, "b"),
            ended(5, 2, "ab"),
            AnswerDelta(4, 0, "c"),
            ended(6, 4, "c"),
        ],
    )
    assert frames == [LOADING, "a", "b", DONE, LOADING, "c", DONE]


def test_waiting_answer_that_ended_first_is_shown_whole_after_the_open_one():
    frames = run(
        caught_up_view(),
        [
            AnswerStarted(seq=2),
            AnswerStarted(seq=3),
            ended(4, 3, "", "CANCELLED", "cancelled by user"),
            AnswerDelta(2, 0, "a"),
            ended(5, 2, "a"),
        ],
    )
    assert frames == [LOADING, "a", DONE, LOADING, "[ERROR] cancelled by user", DONE]


def test_replayed_events_after_resubscribe_produce_no_frames():
    view = caught_up_view()
    first = run(view, [AnswerStarted(seq=2), AnswerDelta(2, 0, "a"), AnswerDelta(2, 1, "b")])
    assert view.cursor == Cursor(seq=2, offset=2)
    replay = run(
        view,
        [AnswerStarted(seq=2), AnswerDelta(2, 1, "b"), AnswerDelta(2, 2, "c"), ended(3, 2, "abc")],
    )
    assert first + replay == [LOADING, "a", "b", "c", DONE]


def test_cursor_follows_the_client_rules():
    view = ThreadView()
    assert view.cursor is None
    view.apply(CaughtUp(seq=7, offset=3))
    assert view.cursor == Cursor(7, 3)
    view.apply(AnswerDelta(answer_seq=6, offset=3, text=""))
    assert view.cursor == Cursor(7, 4)
    view.apply(Logged(seq=8))
    assert view.cursor == Cursor(8, 4)
    # A queued answer starting does not reset the offset: it still counts answer 6's batches.
    view.apply(AnswerStarted(seq=9))
    assert view.cursor == Cursor(9, 4)
    view.apply(ended(10, 6, "abcd"))
    assert view.cursor == Cursor(10, 0)
    view.apply(AnswerDelta(answer_seq=9, offset=0, text="x"))
    assert view.cursor == Cursor(10, 1)
    view.apply(ended(11, 9, "x"))
    assert view.cursor == Cursor(11, 0)


def test_snapshot_of_open_answer_is_loading_and_text_so_far():
    view = caught_up_view()
    assert view.snapshot() == []
    run(view, [AnswerStarted(seq=2)])
    assert view.snapshot() == [LOADING]
    run(view, [AnswerDelta(2, 0, "tok0 "), AnswerDelta(2, 1, "tok1")])
    assert view.snapshot() == [LOADING, "tok0 tok1"]
    run(view, [ended(3, 2, "tok0 tok1")])
    assert view.snapshot() == []


def test_open_answer_replayed_before_caught_up_is_in_the_snapshot():
    view = ThreadView()
    frames = run(view, [AnswerStarted(seq=5), AnswerDelta(5, 0, "tok0"), CaughtUp(seq=5, offset=1)])
    assert frames == [LOADING, "tok0"]
    assert view.snapshot() == [LOADING, "tok0"]
    assert view.cursor == Cursor(5, 1)


def test_end_of_an_answer_never_started_here_shows_it_whole():
    frames = run(caught_up_view(), [ended(3, 2, "whole answer")])
    assert frames == [LOADING, "whole answer", DONE]


def test_answer_text_that_looks_like_a_control_frame_is_escaped():
    texts = ["[DONE]", "[LOADING]", "[ERROR] not really", "\\already", "plain [DONE]"]
    events: list[Event] = [AnswerStarted(seq=1)]
    events += [AnswerDelta(answer_seq=1, offset=i, text=t) for i, t in enumerate(texts)]
    frames = run(caught_up_view(), [*events, ended(2, 1, "".join(texts))])
    assert frames == [
        LOADING,
        "\\[DONE]",
        "\\[LOADING]",
        "\\[ERROR] not really",
        "\\\\already",
        "plain [DONE]",
        DONE,
    ]
    # A client that drops one leading backslash gets the text back exactly.
    shown = "".join(f[1:] if f.startswith("\\") else f for f in frames[1:-1])
    assert shown == "".join(texts)


def test_a_prompt_frame_drops_one_leading_backslash():
    assert prompt_text("\\(GET_HISTORY)") == "(GET_HISTORY)"
    assert prompt_text("\\\\x") == "\\x"
    assert prompt_text("hello") == "hello"


def test_a_restart_clears_the_shown_text_and_the_new_batches_count_from_zero():
    view = caught_up_view()
    frames = run(
        view,
        [
            AnswerStarted(seq=2),
            AnswerDelta(2, 0, "g1tok0 "),
            AnswerDelta(2, 1, "g1tok1 "),
            AnswerRestarted(seq=3, answer_seq=2),
            AnswerDelta(2, 0, "g2tok0 "),
            AnswerDelta(2, 0, "g2tok0 "),  # a replay after a resubscribe: once only
            AnswerDelta(2, 1, "g2tok1"),
        ],
    )
    assert frames == [LOADING, "g1tok0 ", "g1tok1 ", RESTART, "g2tok0 ", "g2tok1"]
    assert view.cursor == Cursor(3, 2)
    assert view.snapshot() == [LOADING, "g2tok0 g2tok1"]
    assert run(view, [ended(4, 2, "g2tok0 g2tok1")]) == [DONE]


def test_an_end_that_does_not_follow_the_shown_text_replaces_it():
    frames = run(
        caught_up_view(),
        [AnswerStarted(seq=2), AnswerDelta(2, 0, "g1tok0 "), ended(3, 2, "g2tok0 g2tok1")],
    )
    assert frames == [LOADING, "g1tok0 ", RESTART, "g2tok0 g2tok1", DONE]


def test_text_that_reads_as_the_restart_frame_is_escaped():
    frames = run(
        caught_up_view(), [AnswerStarted(seq=2), AnswerDelta(2, 0, RESTART), ended(3, 2, RESTART)]
    )
    assert frames == [LOADING, "\\" + RESTART, DONE]
