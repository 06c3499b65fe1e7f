"""What clients have written to a session, read through the session service's own API."""

from __future__ import annotations

import re

import grpc

from durablechat.v1 import session_pb2, session_pb2_grpc

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""The session service's id rule (session.proto): only such ids can name stored sessions."""
PAGE = 100
TIMEOUT_S = 10.0


class WriteLedger:
    """Counts the log events clients caused per session: every event but the ends of answers,
    which the owner writes in the background (one assistant message with an `answer_seq` each,
    on whichever branch it ends, so every branch is read).
    A refused call is judged by this count, never by the raw log length. Reads only the log
    past what it saw last time.
    """

    def __init__(self, stub: session_pb2_grpc.SessionServiceStub) -> None:
        self._stub = stub
        self._seen: dict[str, tuple[int, int]] = {}
        """Session id -> (last seq seen, answer ends among those seqs)."""

    def known(self, session_id: str) -> int:
        """The count as of the last look (read now if never looked at): the state before a
        call when every call is followed by `writes`."""
        if session_id not in self._seen:
            return self.writes(session_id)
        last_seq, answered = self._seen[session_id]
        return last_seq - answered

    def writes(self, session_id: str) -> int:
        """The count now; -1 for a deleted thread (DeleteThread: nothing is readable)."""
        after, answered = self._seen.get(session_id, (0, 0))
        while True:
            try:
                page = self._stub.ListMessages(
                    session_pb2.ListMessagesRequest(
                        session_id=session_id, after_seq=after, limit=PAGE, all_branches=True
                    ),
                    timeout=TIMEOUT_S,
                )
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                self._seen.pop(session_id, None)
                return -1
            answered += sum(1 for m in page.messages if m.answer_seq)
            if not page.has_more:
                break
            after = page.messages[-1].seq
        self._seen[session_id] = (page.last_seq, answered)
        return page.last_seq - answered


def storable(session_id: str) -> bool:
    """Whether the id could name a stored session at all."""
    return SESSION_ID.fullmatch(session_id) is not None
