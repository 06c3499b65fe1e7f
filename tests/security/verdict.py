"""How the fuzzers judge one call: what each caller may be answered, live processes, and a
refused call (or a read) storing nothing: the Redis keys and attachment files before and after.

Before a call the state is read again; after an accepted call (or when it changed since the
last call) the "before" waits until answers ended and Redis is still (snapshot.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc

from tests.security.snapshot import Answers, Snapshot, Stored, changes

ACCEPTABLE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Refusals a client can act on. INTERNAL and UNKNOWN mean the input broke the server."""
WRITES = frozenset(
    {
        "UpdateState",
        "AppendMessage",
        "SendPrompt",
        "CancelAnswer",
        "RenameThread",
        "SetFeedback",
        "EditMessage",
        "RegenerateAnswer",
        "SelectBranch",
    }
)
"""SessionService calls a viewer may not make on a room (docs/security.md, the roles table)."""
MANAGE = frozenset(
    {"SetMember", "CreateInvite", "RevokeInvite", "ListAudit", "DeleteThread", "RestoreThread"}
)
"""Calls only the owner may make on a room."""


def forbidden(role: str, method: str, on_room: bool) -> bool:
    """Whether `role` must never get OK for `method` (on the shared room when `on_room`)."""
    if role in ("owner", "member", "viewer", "outsider"):
        if role == "owner" or not on_room:
            return False
        if role == "outsider":
            return True
        return method in MANAGE or (role == "viewer" and method in WRITES)
    return True  # no identity: refused before anything is read or stored


class Witness:
    """Watches what one stack stores around the calls of one fuzz module."""

    def __init__(self, stored: Stored, answers: Answers, alive: Callable[[], Iterable[str]]):
        self._stored = stored
        self._answers = answers
        self._alive = alive
        self._before: Snapshot | None = None

    def before(self) -> Snapshot:
        """The state before a call: read again (fixtures and setup write without a witness),
        and after an accepted call once its background writes are done."""
        if self._before is None:
            self._before = self._stored.settled(self._answers.busy)
        else:
            now = self._stored.snapshot()
            self._before = now if now == self._before else self._stored.settled(self._answers.busy)
        return self._before

    def after(self, what: str, stores_nothing: bool) -> None:
        """Checks the processes are up and, when the call must store nothing, that nothing
        changed. Call `before()` first."""
        dead = list(self._alive())
        assert not dead, f"{what}: {', '.join(dead)} died"
        before = self.before()
        after = self._stored.snapshot()
        if stores_nothing:
            changed = changes(before, after)
            assert not changed, f"{what} stored: {changed}"
        self._before = after if after == before else None

    def started(self, session_id: str, answer_seq: int, metadata: tuple[tuple[str, str], ...]):
        self._answers.started(session_id, answer_seq, metadata)
        self._before = None
