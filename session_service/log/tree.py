"""The message tree of a session (docs/branches.md): parents, the head, and branches. Pure;
derived only from the log, so every owner that replays it gets the same tree."""

from __future__ import annotations


class MessageTree:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        """Message seq → the seq of the message it follows (0: it is a first message)."""
        self.children: dict[int, list[int]] = {}
        """Message seq (0: the root) → its children, oldest first."""
        self.head = 0
        """The last message of the active branch (0: none yet)."""
        self.branched = False
        """False while the tree is one line in log order (the common case: reads skip work)."""
        self._anchor: dict[int, int] = {}
        """Open answer seq → the head when it started (the message it answers)."""

    def _attach(self, seq: int, parent: int) -> None:
        self.parent[seq] = parent
        self.children.setdefault(parent, []).append(seq)

    def anchors(self) -> list[tuple[int, int]]:
        """(open answer seq, the head when it started), for a snapshot (log/snapshot.py)."""
        return list(self._anchor.items())

    def restore(
        self,
        parents: list[tuple[int, int]],
        head: int,
        branched: bool,
        anchors: list[tuple[int, int]],
    ) -> None:
        """Sets an empty tree to a snapshot's: `parents` in seq order (children keep it)."""
        for seq, parent in parents:
            self._attach(seq, parent)
        self.head, self.branched = head, branched
        self._anchor = {int(a): int(h) for a, h in anchors}

    def add(self, seq: int) -> None:
        """A message appended after the head; it becomes the head."""
        self._attach(seq, self.head)
        self.head = seq

    def start_answer(self, answer_seq: int) -> None:
        self._anchor[answer_seq] = self.head

    def end_answer(self, seq: int, answer_seq: int) -> None:
        """An answer's message: after the head while its prompt is on the active branch, else
        under its prompt (the head stays)."""
        anchor = self._anchor.pop(answer_seq, self.head)
        if self.on_active(anchor):
            self.add(seq)
        else:
            self._attach(seq, anchor)
            self.branched = True

    def add_version(self, seq: int, answer_seq: int) -> None:
        """An interrupted version of an open answer (it restarted): under the answer's prompt,
        beside where the answer will end; the head stays."""
        self._attach(seq, self._anchor.get(answer_seq, self.head))
        self.branched = True

    def select(self, head: int) -> None:
        self.head = head
        self.branched = True

    def on_active(self, seq: int) -> bool:
        """Whether `seq` is the head or one of its ancestors."""
        node = self.head
        while node > seq:
            node = self.parent[node]
        return node == seq

    def leaf_of(self, seq: int) -> int:
        """The leaf reached from `seq` by always taking the newest child."""
        while self.children.get(seq):
            seq = self.children[seq][-1]
        return seq

    def path(self, seq: int) -> list[int]:
        """The seqs from the first message to `seq`, in order."""
        out = []
        while seq:
            out.append(seq)
            seq = self.parent[seq]
        return out[::-1]

    def leaves(self) -> list[int]:
        return [seq for seq in self.parent if not self.children.get(seq)]
