"""Who may do what in a session: the one place the policy lives (README "Security").

Contract:
- Enforced only when the caller was authenticated under AUTH_MODE=jwt (`Caller.enforced`); with
  AUTH_MODE=off every caller may do everything, as before access control existed.
- Roles: owner (everything: members, invites, audit), member (read, post, prompt, cancel,
  change state), viewer (read only). A session's owner is the first user granted `owner`: the
  first writer of an unowned session, or whoever claimed it with CreateRoom.
- A caller without a role gets NOT_FOUND for every operation, exactly as for a session that
  does not exist, so ids cannot be probed; with a role that does not allow the operation,
  PERMISSION_DENIED. A write to an unowned, empty session claims it first (the actor stores the
  grant once the write passed its checks). Sessions with history but no owner (written with
  AUTH_MODE=off) are NOT_FOUND to everyone under AUTH_MODE=jwt: their history is not anyone's.
- A deleted thread is NOT_FOUND to everyone, for everything but its owner's RestoreThread.
- Message roles: `system` and `assistant` messages are the owner's (and the service's: answers);
  a member posting or editing one gets PERMISSION_DENIED (`require_message_role`).
- Checked by the owner actor for every operation, on whichever pod and transport the call came.
"""

from __future__ import annotations

from dataclasses import dataclass

from session_service.errors import NotFound, PermissionDenied
from session_service.log.events import MEMBER as MEMBER
from session_service.log.events import OWNER as OWNER
from session_service.log.events import VIEWER as VIEWER
from session_service.log.session import Session

ROLES = (OWNER, MEMBER, VIEWER)

READ = "read"
WRITE = "write"
MANAGE = "manage"
RESTORE = "restore"
"""Bringing back a deleted thread: the owner's, and the only operation a deleted thread has."""

NOT_FOUND = "session not found"
"""The one message for unknown and forbidden sessions alike."""


@dataclass(frozen=True)
class Caller:
    user: str
    enforced: bool = False
    """True under AUTH_MODE=jwt: the policy applies."""


ANONYMOUS = Caller("")


def role_of(session: Session, caller: Caller) -> str:
    return session.roles.get(caller.user, "") if caller.enforced else ""


def claimable(session: Session) -> bool:
    """Nobody owns it and nothing was ever stored in it. A session with events but no owner
    was written with AUTH_MODE=off (or before access control): nobody may claim its history."""
    return not session.owner and session.last_seq == 0


def claims(session: Session, caller: Caller) -> bool:
    """True when a write by `caller` must first make them the owner."""
    return caller.enforced and claimable(session)


def require(session: Session, caller: Caller, need: str) -> None:
    """Raises NotFound or PermissionDenied unless `caller` may do `need` (READ, WRITE, MANAGE).
    A WRITE on an unowned session passes: the caller claims it (see `claims`). A deleted
    thread is NOT_FOUND for everything but RESTORE (docs/threads.md)."""
    if bool(session.deleted_ms) != (need == RESTORE):
        raise NotFound(NOT_FOUND)
    if not caller.enforced:
        return
    role = session.roles.get(caller.user, "")
    if need == RESTORE and role != OWNER:  # deleted: nobody else may know more
        raise NotFound(NOT_FOUND)
    if not role:
        if need == WRITE and claimable(session):
            return
        raise NotFound(NOT_FOUND)
    if need == WRITE and role == VIEWER:
        raise PermissionDenied("viewers can read this session but not post, prompt or change it")
    if need == MANAGE and role != OWNER:
        raise PermissionDenied("only the session's owner can manage members, invites and audit")


SERVICE_ROLES = ("system", "assistant")
"""Message roles the service writes (answers) and a session's owner may post (a system prompt,
a canned answer); members post `user` messages only."""


def require_message_role(session: Session, caller: Caller, role: str) -> None:
    """Raises PermissionDenied unless `caller` may store a message of `role`: anyone who may
    write posts `user` messages; `system` and `assistant` messages need the owner (or the
    caller about to claim the session, who becomes it). Call after `require(..., WRITE)`."""
    if role not in SERVICE_ROLES or not caller.enforced or claims(session, caller):
        return
    if session.roles.get(caller.user, "") != OWNER:
        raise PermissionDenied(
            f"only the session's owner can post {role} messages; members post user messages"
        )
