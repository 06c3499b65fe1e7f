"""What clients were promised, and whether the store kept it: the check of every crash test.

A client records each write the system ACKNOWLEDGED as (client_message_id, content, seq). After
the crash, `Ledger.check(session, stored)` compares that with the session's stored history:

- lost:       no stored message has the write's content (or its client_message_id);
- duplicated: the content or the client_message_id is stored more than once, or two stored
              messages share a seq;
- changed:    the write is stored, but not at its acknowledged seq, or with other bytes or
              another client_message_id at that seq.

Contents are compared byte for byte (UTF-8). Comparing seqs alone is not enough: if an
acknowledged write were lost and the next write reused its seq, every acknowledged seq would
still be stored; here the lost content is missing, so it is reported. Stored messages no one
recorded (a write whose acknowledgement never arrived, the model's answers) are not errors: the
caller checks those by its own rules (`unrecorded`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from durablechat.v1 import common_pb2


@dataclass(frozen=True)
class Write:
    """One acknowledged write, as its client saw it."""

    cid: str
    content: str
    seq: int


@dataclass(frozen=True)
class Stored:
    """One stored message, as a history read returned it."""

    seq: int
    content: str
    cid: str = ""

    @classmethod
    def of(cls, message: common_pb2.Message) -> Stored:
        return cls(message.seq, message.content, message.client_message_id)


@dataclass
class Verdict:
    lost: list[Write] = field(default_factory=list)
    duplicated: list[Write] = field(default_factory=list)
    changed: list[tuple[Write, Stored | None]] = field(default_factory=list)
    seqs_twice: list[int] = field(default_factory=list)
    checked: int = 0
    unrecorded: list[Stored] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.changed or self.seqs_twice)

    def __str__(self) -> str:
        return (
            f"{self.checked} acknowledged writes: {len(self.lost)} lost {self.lost[:5]}, "
            f"{len(self.duplicated)} duplicated {self.duplicated[:5]}, {len(self.changed)} "
            f"changed {self.changed[:5]}, seqs stored twice {self.seqs_twice[:5]}"
        )


class Ledger:
    """Acknowledged writes per session; safe to share between the tasks of one event loop."""

    def __init__(self) -> None:
        self.writes: dict[str, dict[str, Write]] = {}

    def record(self, session: str, cid: str, content: str, seq: int) -> None:
        """One acknowledgement. A retry acknowledged again must name the same seq."""
        mine = self.writes.setdefault(session, {})
        before = mine.get(cid)
        assert before is None or before == Write(cid, content, seq), (
            f"{session}/{cid} acknowledged twice differently: {before} then seq {seq}"
        )
        mine[cid] = Write(cid, content, seq)

    def count(self, session: str | None = None) -> int:
        if session is not None:
            return len(self.writes.get(session, {}))
        return sum(len(w) for w in self.writes.values())

    def check(self, session: str, stored: Iterable[Stored]) -> Verdict:
        history = list(stored)
        at_seq: dict[int, Stored] = {}
        for message in history:
            at_seq.setdefault(message.seq, message)
        contents = Counter(m.content.encode() for m in history)
        cids = Counter(m.cid for m in history if m.cid)
        verdict = Verdict(
            seqs_twice=sorted(s for s, n in Counter(m.seq for m in history).items() if n > 1)
        )
        mine = self.writes.get(session, {})
        verdict.checked = len(mine)
        for write in mine.values():
            copies, named = contents[write.content.encode()], cids[write.cid]
            here = at_seq.get(write.seq)
            if copies == 0 and named == 0:
                verdict.lost.append(write)
            elif copies > 1 or named > 1:
                verdict.duplicated.append(write)
            elif (
                here is None
                or here.content.encode() != write.content.encode()
                or (here.cid and here.cid != write.cid)
            ):
                verdict.changed.append((write, here))
        recorded = {w.cid for w in mine.values()}
        verdict.unrecorded = [m for m in history if m.cid not in recorded]
        return verdict

    def assert_kept(self, session: str, stored: Iterable[Stored]) -> Verdict:
        """`check`, failing with the report unless every acknowledged write was kept."""
        verdict = self.check(session, stored)
        assert verdict.ok, f"session {session}: {verdict}"
        print(f"ledger {session}: {verdict}")
        return verdict
