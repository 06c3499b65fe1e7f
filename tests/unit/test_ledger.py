"""The crash tests' ledger (tests/support/ledger.py) catches what a seq-only check cannot: an
acknowledged write lost and its seq reused by the next write; and duplicates and changed bytes."""

from __future__ import annotations

from tests.support.ledger import Ledger, Stored, Write

SID = "s"


def ledger_of(*writes: Write) -> Ledger:
    ledger = Ledger()
    for w in writes:
        ledger.record(SID, w.cid, w.content, w.seq)
    return ledger


def kept(*writes: Write) -> list[Stored]:
    return [Stored(w.seq, w.content, w.cid) for w in writes]


FIRST = [Write(f"c{k}", f"w0-{k} ✓", k) for k in range(1, 5)]


def test_a_lost_write_whose_seq_the_next_write_reused_is_reported_lost() -> None:
    lost = Write("a", "w1-0 é", 5)  # acknowledged at seq 5, then lost in the crash
    reused = Write("b", "w2-0 ü", 5)  # the next write, acknowledged at the same seq 5
    ledger = ledger_of(*FIRST, lost, reused)
    stored = kept(*FIRST, reused)
    acked_seqs = {w.seq for w in ledger.writes[SID].values()}
    assert acked_seqs <= {m.seq for m in stored}, "a seq-only check sees nothing wrong"
    verdict = ledger.check(SID, stored)
    assert verdict.lost == [lost]
    assert not verdict.duplicated and not verdict.changed and not verdict.ok


def test_a_write_stored_twice_is_reported_duplicated() -> None:
    write = Write("a", "once", 5)
    stored = [*kept(*FIRST, write), Stored(6, "once", "")]  # a retry stored a second copy
    verdict = ledger_of(*FIRST, write).check(SID, stored)
    assert verdict.duplicated == [write] and not verdict.lost and not verdict.changed


def test_other_bytes_or_another_seq_are_reported_changed() -> None:
    altered = Write("a", "caf\u00e9", 5)
    moved = Write("b", "moved", 6)
    stored = [*kept(*FIRST), Stored(5, "cafe\u0301", "a"), Stored(7, "moved", "b")]
    verdict = ledger_of(*FIRST, altered, moved).check(SID, stored)
    assert [w for w, _ in verdict.changed] == [altered, moved]
    assert not verdict.lost and not verdict.duplicated


def test_a_seq_stored_twice_is_reported() -> None:
    verdict = ledger_of(*FIRST).check(SID, [*kept(*FIRST), Stored(4, "other", "x")])
    assert verdict.seqs_twice == [4] and not verdict.ok


def test_every_write_kept_passes_and_unacknowledged_messages_are_listed() -> None:
    answer = Stored(5, "tok0 tok1", "")
    verdict = ledger_of(*FIRST).check(SID, [*kept(*FIRST), answer])
    assert verdict.ok and verdict.checked == 4 and verdict.unrecorded == [answer]
