"""Counting chunks generated twice: what earlier calls sent beyond the continued prefix."""

from __future__ import annotations

from ai_service.regenerated import SentChunks


def send(answer, *chunks: str) -> None:
    for chunk in chunks:
        answer.sent(chunk)


def test_a_first_call_regenerates_nothing() -> None:
    sent = SentChunks()
    answer = sent.start("s:1", 0)
    send(answer, "a", "b", "c")
    assert answer.regenerated == 0


def test_chunks_sent_beyond_the_stored_prefix_are_counted_on_the_next_call() -> None:
    sent = SentChunks()
    send(sent.start("s:1", 0), "ab", "cd", "ef", "gh")  # stored: "abcd"
    again = sent.start("s:1", len("abcd"))
    assert again.regenerated == 2
    send(again, "ef", "gh")
    assert again.regenerated == 2


def test_counts_add_up_over_several_continuations() -> None:
    sent = SentChunks()
    send(sent.start("s:1", 0), "a", "b", "c")
    second = sent.start("s:1", 1)  # "b", "c" lost
    send(second, "b", "c", "d")
    third = sent.start("s:1", 3)  # "d" lost
    assert third.regenerated == 3


def test_a_continuation_with_nothing_stored_regenerates_everything_sent() -> None:
    sent = SentChunks()
    send(sent.start("s:1", 0), "a", "b")
    assert sent.start("s:1", 0).regenerated == 2


def test_answers_are_counted_apart_and_the_oldest_forgotten() -> None:
    sent = SentChunks(capacity=2)
    for request_id in ("s:1", "s:2", "s:3"):
        send(sent.start(request_id, 0), "x", "y")
    assert sent.start("s:3", 1).regenerated == 1
    assert sent.start("s:1", 0).regenerated == 0  # evicted: an undercount, never an overcount


def test_an_empty_request_id_is_not_remembered() -> None:
    sent = SentChunks()
    send(sent.start("", 0), "a")
    assert sent.start("", 0).regenerated == 0


def test_a_superseded_call_stops_recording_so_nothing_is_counted_twice() -> None:
    sent = SentChunks()
    old = sent.start("s:1", 0)
    send(old, "a", "b")
    new = sent.start("s:1", 1)  # a new owner continues after "a"; the old one is paused
    send(old, "c", "d")  # the old call wakes and keeps streaming: ignored
    send(new, "b", "c")
    assert sent.start("s:1", 3).regenerated == 1  # only "b" of the old call was lost
