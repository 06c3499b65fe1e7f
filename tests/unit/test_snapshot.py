"""Snapshots (log/snapshot.py): a windowed image restored from a snapshot and the log's tail has
every derived view of the whole log, refuses what it cannot answer, and becomes the whole log's
image once completed."""

from __future__ import annotations

from typing import Any

import pytest

from session_service.actor.prompt_window import OLDER_CHUNK, trim, window_of
from session_service.log import events as ev
from session_service.log import snapshot
from session_service.log.session import NotLoaded, Session


def thread(answers: int, open_answer: bool = True) -> list[bytes]:
    """A log with every kind of event: access, a system message, answered prompts with usage,
    state patches, feedback, a rename, an invite, a branch, and an answer left open."""
    log = [ev.encode_grant("ann", ev.OWNER, "ann", 1), ev.encode_message("system", "be", "", 2, "")]
    for i in range(answers):
        prompt = len(log) + 1
        log.append(ev.encode_message("user", f"prompt {i}", "ann", 10 + i, f"c{i}"))
        log.append(ev.encode_answer_start(prompt, 10 + i))
        log.append(
            ev.encode_answer_end(
                prompt + 1, f"answer {i} " * 20, ev.COMPLETED, "", 11 + i, (3, 40, i % 2)
            )
        )
        if i % 7 == 3:
            log.append(ev.encode_state(f'{{"n":{i}}}', i // 7 + 1, 12 + i, "ann"))
        if i % 11 == 5:
            log.append(ev.encode_feedback(prompt + 2, "ann", ev.UP, f"good {i}", 13 + i))
        if i == 20:
            log.append(ev.encode_rename("a title", "ann", 14 + i))
            log.append(ev.encode_invite("inv", "h" * 64, ev.MEMBER, 99, "ann", 14 + i))
            log.append(ev.encode_grant("bob", ev.MEMBER, "ann", 15 + i, "inv"))
        if i == 30:
            log.append(ev.encode_branch(prompt - 3, "ann", 16 + i))  # back to an older answer
    if open_answer:
        prompt = len(log) + 1
        log.append(ev.encode_message("user", "still open", "ann", 900, "open"))
        log.append(ev.encode_answer_start(prompt, 900))
    return [ev.mark_imported(e, "imp") if i == 5 else e for i, e in enumerate(log)]


def views(s: Session) -> tuple[Any, ...]:
    """Every derived view the owner keeps for the whole log."""
    return (
        s.last_seq,
        s.state,
        s.version,
        s.owner,
        list(s.roles.items()),
        {k: vars(v) for k, v in s.invites.items()},
        s.removed,
        (s.title, s.renamed, s.deleted_ms, s.purge_ms),
        (s.last_activity_ms, s.first_ts_ms, s.message_count, s.token_totals, s.system_seqs),
        (s.tree.parent, s.tree.children, s.tree.head, s.tree.branched, s.tree.anchors()),
        [(a.seq, a.prompt_seq) for a in s.open_answers],
        {seq: list(given.items()) for seq, given in s.feedback.items()},
        s.state_json(),
    )


def restored(log: list[bytes], at: int) -> Session:
    """The image an activation builds from a snapshot taken at seq `at`, with the log now."""
    taken = Session.load("s", 1, 0, 0, log[:at])
    base = snapshot.window_start(taken) - 1
    body = snapshot.encode(taken)
    return snapshot.restore("s", 2, 0, 0, body, base, log[base:])


@pytest.mark.parametrize("at", [200, 230, 260])
def test_a_restored_image_has_every_view_of_the_whole_log(at):
    log = thread(80)
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, at)
    assert views(image) == views(full)
    assert 0 < image.base_seq < at
    assert len(image.events) == len(log) - image.base_seq
    assert image.messages == full.messages[-len(image.messages) :]


def test_an_activation_reads_a_bounded_window_whatever_the_length():
    for answers in (100, 1000):
        log = thread(answers, open_answer=False)
        image = restored(log, len(log))
        assert len(image.events) == snapshot.WINDOW_EVENTS


def test_the_window_reaches_back_to_every_open_answers_prompt():
    log = thread(80)
    version = Session.load("s", 1, 0, 0, log).version
    log += [ev.encode_state(f'{{"x":{i}}}', version + 1 + i, 1000 + i) for i in range(300)]
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, len(log))
    [answer] = image.open_answers
    assert image.base_seq < answer.prompt_seq
    assert image.event_at(answer.seq) == full.event_at(answer.seq)
    assert views(image) == views(full)


def test_completing_gives_the_whole_logs_image():
    log = thread(80)
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, 240)
    image.complete(log[: image.base_seq])
    assert image.whole
    assert views(image) == views(full)
    assert image.events == full.events
    assert image.messages == full.messages
    assert image.client_ids == full.client_ids
    assert image.answer_of_prompt == full.answer_of_prompt
    assert image.replay(0, 0) == full.replay(0, 0)


def test_a_snapshot_that_does_not_match_the_log_is_refused_on_completion():
    log = thread(80)
    image = restored(log, 240)
    other = thread(81)
    with pytest.raises(ValueError, match="does not match"):
        image.complete(other[: image.base_seq - 3] + [ev.encode_state('{"z":1}', 1, 5)] * 3)


def test_reads_before_the_window_are_refused_not_answered_from_part():
    image = restored(thread(80), 240)
    base = image.base_seq
    with pytest.raises(NotLoaded):
        image.replay(base - 1, 0)
    with pytest.raises(NotLoaded):
        image.message_at(3)
    with pytest.raises(NotLoaded):
        image.messages_after(0, 10)
    with pytest.raises(NotLoaded):
        image.attachment("0" * 64)
    assert image.replay(base, 0)[-1] == Session.load("s", 1, 0, 0, thread(80)).replay(base, 0)[-1]


@pytest.mark.parametrize(
    ("version", "body"),
    [pytest.param(2, None, id="newer-version"), pytest.param(1, b'{"v":1}', id="truncated")],
)
def test_an_unusable_snapshot_is_refused(version, body):
    log = thread(10)
    taken = Session.load("s", 1, 0, 0, log)
    raw = body or snapshot.encode(taken).replace(b'"v":1', b'"v":%d' % version)
    with pytest.raises(ValueError):
        snapshot.restore("s", 2, 0, 0, raw, 0, log)


@pytest.mark.parametrize("system", [True, False], ids=["system-message", "none"])
@pytest.mark.parametrize("budget", [50, 300, 2_000, 100_000])
async def test_the_prompt_window_of_a_windowed_image_is_the_whole_logs(budget, system):
    log = thread(80)
    if not system:
        log[1] = ev.encode_message("user", "no system message", "", 2, "")
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, len(log))
    [answer] = image.open_answers
    reads: list[list[int]] = []

    async def read(seqs: list[int]) -> list[ev.Message]:
        reads.append(seqs)
        return [full.message_at(seq) for seq in seqs]

    got = await window_of(image, answer.prompt_seq, budget, read)
    assert got == trim(full.history_until(answer.prompt_seq), budget)
    assert not image.whole  # what was read is not kept
    # Read: the system message, and older messages only as far as the budget reached.
    assert sum(map(len, reads)) <= len(got) + OLDER_CHUNK
    if budget <= 300 and not system:
        assert reads == []  # the budget ended inside the window


@pytest.mark.parametrize("cursor", [0, 5, 60])
def test_a_replay_from_before_the_window_with_the_older_events_is_the_whole_logs(cursor):
    log = thread(80)
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, 240)
    base = image.base_seq
    assert cursor < base
    older = [ev.decode(seq, log[seq - 1]) for seq in range(cursor + 1, base + 1)]
    assert image.replay(cursor, 3, older) == full.replay(cursor, 3)
    with pytest.raises(NotLoaded):
        image.replay(cursor, 0, older[1:])


def test_history_pages_name_the_same_messages_from_the_tree():
    log = thread(80)
    full = Session.load("s", 2, 0, 0, log)
    image = restored(log, 240)
    for kwargs in ({}, {"all_branches": True}, {"through": 3}):
        after = 0
        while True:
            seqs, more = image.page_seqs(after, 17, **kwargs)
            page, full_more = full.messages_after(after, 17, **kwargs)
            assert seqs == [m.seq for m in page] and more == full_more
            if not more:
                break
            after = seqs[-1]


@pytest.mark.parametrize("seq", [0, -1])
def test_a_seq_below_one_is_no_message_on_a_whole_image_too(seq):
    # A clean-clone CI run's fuzzer sent SelectBranch with message_seq 0: with nothing windowed
    # (base_seq 0) that read as "not loaded" and answered INTERNAL instead of INVALID_ARGUMENT.
    whole = Session.load("s", 2, 0, 0, thread(3))
    with pytest.raises(KeyError):
        whole.message_at(seq)
    with pytest.raises(KeyError):
        restored(thread(80), 240).message_at(seq)
