"""What a gRPC fan-out feed holds of one session's stream, and the replay it owes a subscriber.

A mirror of the owner's replay rule (session_service/log/session.py `Session.replay`,
docs/resume.md) over the encoded events one upstream Subscribe delivered: the log events after
`base`, the batches of every open answer, the cursor and who is online. `replay` gives a new
subscriber exactly the events, in the order, that the owner would give it for the same cursor
at this point, already encoded; or None when this window cannot (the cursor is older than
`base`, or ahead of what the feed has received), and the caller asks the owner instead. No I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from durablechat.v1 import session_pb2

LOG_KINDS = frozenset(
    {
        "message_appended",
        "state_changed",
        "answer_started",
        "answer_ended",
        "answer_restarted",
        "access_changed",
        "thread_changed",
        "feedback_changed",
        "branch_selected",
    }
)
"""Event kinds with a gapless log seq; the others (deltas, CaughtUp, presence) have none."""


def encode(event: session_pb2.SessionEvent) -> bytes:
    return session_pb2.SubscribeResponse(event=event).SerializeToString()


@dataclass
class _Logged:
    seq: int
    data: bytes
    ends_answer: bool
    """An answer's end or restart: the streaming answer's batches count from 0 after it."""


@dataclass
class _Answer:
    seq: int
    batches: list[bytes] = field(default_factory=list)


class EventWindow:
    """Encoded events of one session from `base` on; fed in stream order by one feed.

    Holds at most `max_events` log events (older ones are dropped and `base` moves up) and the
    batches of the open answers (dropped when the answer ends or restarts, as the owner drops
    them). Every
    held event carries `epoch`, the epoch of the upstream stream, as the owner stamps a stream.
    """

    def __init__(self, max_events: int) -> None:
        self.base = 0
        """Every log event with seq > base is held."""
        self.last_seq = 0
        self.epoch = 0
        self.online: tuple[str, ...] = ()
        self._max_events = max_events
        self._log: list[_Logged] = []
        self._open: list[_Answer] = []

    @property
    def cursor(self) -> tuple[int, int]:
        """Where the upstream stream stands: the cursor to resubscribe from."""
        return self.last_seq, len(self._open[0].batches) if self._open else 0

    def apply(self, event: session_pb2.SessionEvent) -> bytes | None:
        """Takes one upstream event; returns its encoding when subscribers must get it, None
        when it is a repeat (a resubscription replays from the cursor), or a CaughtUp."""
        if event.epoch != self.epoch:
            self._restamp(event.epoch)
        kind = event.WhichOneof("kind")
        if kind == "caught_up":
            return None
        if kind == "presence_changed":
            self.online = tuple(event.presence_changed.users)
            return encode(event)
        if kind == "answer_delta":
            return self._delta(event)
        if kind not in LOG_KINDS or event.seq <= self.last_seq:
            return None if kind in LOG_KINDS else encode(event)  # unknown kinds pass through
        data = encode(event)
        self.last_seq = event.seq
        ended = kind == "answer_ended"
        restarted = kind == "answer_restarted"
        self._log.append(_Logged(event.seq, data, ended or restarted))
        if kind == "answer_started":
            self._open.append(_Answer(event.seq))
        elif ended:
            done = event.answer_ended.message.answer_seq
            self._open = [a for a in self._open if a.seq != done]
        elif restarted:
            again = event.answer_restarted.interrupted.answer_seq
            for answer in self._open:
                if answer.seq == again:
                    answer.batches = []
        if len(self._log) > self._max_events:
            dropped = len(self._log) - self._max_events
            self.base = self._log[dropped - 1].seq
            del self._log[:dropped]
        return data

    def replay(self, after_seq: int | None, after_offset: int, user: str) -> list[bytes] | None:
        """The owner's replay for this cursor (then CaughtUp, and PresenceChanged for a signed-in
        `user`), or None when the window does not hold what it needs."""
        streaming = self._open[0] if self._open else None
        if after_seq is None:
            after_seq = streaming.seq - 1 if streaming else self.last_seq
            after_offset = 0
        if not self.base <= after_seq <= self.last_seq:
            return None
        missed = self._log[bisect.bisect_right(self._log, after_seq, key=_seq) :]
        out = [logged.data for logged in missed]
        offset = 0
        if streaming is not None:
            ended_since = any(logged.ends_answer for logged in missed)
            first = after_offset if streaming.seq <= after_seq and not ended_since else 0
            if first > len(streaming.batches):  # batches this feed has not received yet
                return None
            out.extend(streaming.batches[first:])
            offset = len(streaming.batches)
        mark = session_pb2.SessionEvent(seq=self.last_seq, offset=offset, epoch=self.epoch)
        mark.caught_up.SetInParent()
        out.append(encode(mark))
        if user:
            presence = session_pb2.SessionEvent(seq=self.last_seq, offset=offset, epoch=self.epoch)
            presence.presence_changed.users.extend(self.online)
            out.append(encode(presence))
        return out

    def _delta(self, event: session_pb2.SessionEvent) -> bytes | None:
        answer = next((a for a in self._open if a.seq == event.seq), None)
        if answer is None:  # its start is older than the window: it is the streaming answer
            answer = _Answer(event.seq)
            self._open.insert(0, answer)
        if event.offset != len(answer.batches):
            return None  # a repeat after a resubscription (or a gap the owner never sends)
        data = encode(event)
        answer.batches.append(data)
        return data

    def _restamp(self, epoch: int) -> None:
        """A new upstream stream (another owner): held events now carry its epoch, as a
        subscription to that owner would."""
        self.epoch = epoch
        for logged in self._log:
            logged.data = _with_epoch(logged.data, epoch)
        for answer in self._open:
            answer.batches = [_with_epoch(data, epoch) for data in answer.batches]


def _seq(logged: _Logged) -> int:
    return logged.seq


def _with_epoch(data: bytes, epoch: int) -> bytes:
    reply = session_pb2.SubscribeResponse.FromString(data)
    reply.event.epoch = epoch
    return reply.SerializeToString()
