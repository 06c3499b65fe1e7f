"""Counts chunks the model generated twice for one answer.

Contract: a caller that continues an answer sends the same `request_id` with the answer's stored
text as a trailing assistant turn. With ANSWER_CONTINUE=prefill every chunk an earlier call with
that id sent beyond that text was generated, sent, and lost (its receiver died or the stream was
cut before it was stored), so the model produces it again. With restart the new call answers
afresh and its answer replaces the stored text, so every chunk earlier calls sent is generated
again (the call starts from a kept prefix of 0). Those chunks are `regenerated`, summed over the
id's calls.

Kept in this process's memory for the most recent `capacity` request ids: after a restart, or
for an id evicted meanwhile, the count starts again at 0 (an undercount, never an overcount).
Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import OrderedDict

DEFAULT_CAPACITY = 4096


class Answer:
    """What one request id's calls sent: each chunk's end offset in the answer's text."""

    __slots__ = ("added", "calls", "ends", "offset", "regenerated")

    def __init__(self) -> None:
        self.ends = array("Q")
        self.offset = 0
        self.regenerated = 0
        self.added = 0
        """What the latest call added to `regenerated`."""
        self.calls = 0
        """Calls started for this request id; only the latest one records."""

    def continue_from(self, prefix_chars: int) -> None:
        """A new call for this answer whose stored text is `prefix_chars` long."""
        kept = bisect_right(self.ends, prefix_chars)
        self.added = len(self.ends) - kept
        self.regenerated += self.added
        del self.ends[kept:]
        self.offset = prefix_chars
        self.calls += 1


class Call:
    """One Generate call's view of its Answer. A call superseded by a newer call for the same
    request id (a paused old owner still streaming) stops recording, so the counts stay those
    of the newest call's prefix and never double count."""

    __slots__ = ("_answer", "_number")

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._number = answer.calls

    @property
    def regenerated(self) -> int:
        return self._answer.regenerated

    @property
    def added(self) -> int:
        return self._answer.added if self._number == self._answer.calls else 0

    def sent(self, text: str) -> None:
        answer = self._answer
        if self._number != answer.calls:
            return
        answer.offset += len(text)
        answer.ends.append(answer.offset)


class SentChunks:
    """The Answer of each recent request id, oldest evicted first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._answers: OrderedDict[str, Answer] = OrderedDict()

    def start(self, request_id: str, prefix_chars: int) -> Call:
        """The Call a Generate for `request_id` records into; an empty id is not remembered."""
        answer = self._answers.pop(request_id, None) or Answer()
        answer.continue_from(prefix_chars)
        if request_id:
            self._answers[request_id] = answer
            while len(self._answers) > self._capacity:
                self._answers.popitem(last=False)
        return Call(answer)
