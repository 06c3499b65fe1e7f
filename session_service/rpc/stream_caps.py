"""How many Subscribe streams each user has open on this pod (MAX_STREAMS_PER_USER).

Contract:
- A stream is counted by the pod that serves it from the session's owner actor, from before
  it registers with the actor until it ends (any way: cancelled, cut, closed). A pod that
  forwards a stream to the owner does not count it, so a forwarded stream counts once; the
  count never depends on metadata a client sends (the hop count is such metadata).
- Only signed-in users (AUTH_MODE=jwt) are counted: an unverified name could dodge any cap.
- Past the cap, a new stream is refused with RESOURCE_EXHAUSTED naming the setting; the
  user's open streams go on. 0 turns the cap off. Per pod, in memory: a pod's restart ends
  its streams and their counts together.
"""

from __future__ import annotations

from collections import Counter

from session_service.errors import TooBusy


class TooManyStreams(TooBusy):
    """The user has MAX_STREAMS_PER_USER Subscribe streams open on this pod:
    RESOURCE_EXHAUSTED. Close one, or retry later."""


class StreamCaps:
    """Open streams per user; touched only on the event loop."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._open: Counter[str] = Counter()

    def acquire(self, user: str) -> bool:
        """Counts one more stream of `user`, or raises TooManyStreams; returns whether it was
        counted (then `release` it exactly once)."""
        if not user or not self._per_user:
            return False
        if self._open[user] >= self._per_user:
            raise TooManyStreams(
                f"{user} has {self._open[user]} Subscribe streams open on this pod; at most"
                f" {self._per_user} (MAX_STREAMS_PER_USER): close one first"
            )
        self._open[user] += 1
        return True

    def release(self, user: str) -> None:
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]

    def open_streams(self, user: str) -> int:
        return self._open[user]
