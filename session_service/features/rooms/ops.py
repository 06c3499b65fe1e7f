"""Rooms: claiming a session, members and roles, invites and the audit view, as operations on
the owner actor they take (actor/session_actor.py, which also keeps presence); the policy
itself is actor/access.py.

Every change is an access event in the session's log, stored by the same fenced script as any
write (`SessionActor.store_access`), so it is durable when acknowledged, replayed on activation,
streamed to subscribers and read back by the audit view. Invites store only the SHA-256 of their
code; a code is shown once. A user who loses access has their open streams closed (NOT_FOUND)
at once.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from session_service.actor import access
from session_service.actor.access import MEMBER, OWNER, VIEWER, Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument, NotFound, PermissionDenied
from session_service.log.events import (
    AccessChanged,
    AnswerEnded,
    Event,
    FeedbackChanged,
    MessageAppended,
    StateChanged,
    ThreadChanged,
    encode_grant,
    encode_invite,
    encode_revoke,
    imported_by_of,
    now_ms,
)

if TYPE_CHECKING:
    from session_service.log.session import Invite, Session

INVITE_TTL_DEFAULT_S = 7 * 24 * 3600
INVITE_TTL_MAX_S = 30 * 24 * 3600
INVITE_NOT_FOUND = "session or invite not found (it may have expired or been revoked)"


def invite_id_of(code: str) -> tuple[str, str]:
    """(invite id, code hash): the id is the hash's first 16 hex digits, so it names the
    invite without revealing anything that helps to forge its code."""
    digest = hashlib.sha256(code.encode()).hexdigest()
    return digest[:16], digest


class RoomOps:
    """The access operations of one actor."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def claim(self, caller: Caller) -> str:
        """CreateRoom: makes the caller the owner of an unowned session; returns their role."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            if s.deleted_ms:  # nobody may know more of a deleted thread (docs/threads.md)
                raise NotFound(access.NOT_FOUND)
            if not caller.enforced:
                return ""
            if access.claimable(s):
                await actor.store_access(encode_grant(caller.user, OWNER, caller.user, now_ms()))
            role = s.roles.get(caller.user, "")
            if not role:
                raise NotFound(access.NOT_FOUND)
            return role

    async def set_member(self, caller: Caller, user: str, role: str) -> int:
        """Grants `role` to `user` ("" removes; a member may remove themselves). Returns the
        event's seq, 0 when nothing changed."""
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            leaving = user == caller.user and not role
            actor.read(caller, access.READ if leaving else access.MANAGE)
            if user == s.owner and s.owner:
                raise PermissionDenied(
                    "the owner's role cannot be changed and the owner cannot leave"
                )
            if role not in ("", MEMBER, VIEWER):
                raise InvalidArgument("role must be MEMBER, VIEWER or UNSPECIFIED (remove)")
            if s.roles.get(user, "") == role:
                return 0
            event = await actor.store_access(encode_grant(user, role, caller.user, now_ms()))
            return event.seq

    async def create_invite(self, caller: Caller, role: str, ttl_s: int) -> tuple[str, Invite]:
        """A new invite code (shown once) and its invite."""
        if role not in (MEMBER, VIEWER):
            raise InvalidArgument("an invite's role must be MEMBER or VIEWER")
        if ttl_s > INVITE_TTL_MAX_S:
            raise InvalidArgument(f"ttl_seconds must be at most {INVITE_TTL_MAX_S}")
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            actor.read(caller, access.MANAGE)
            code = secrets.token_urlsafe(32)
            invite_id, digest = invite_id_of(code)
            ts = now_ms()
            expires = ts + 1000 * (ttl_s or INVITE_TTL_DEFAULT_S)
            entry = encode_invite(invite_id, digest, role, expires, caller.user, ts)
            await actor.store_access(entry)
            return code, actor.session.invites[invite_id]

    async def revoke_invite(self, caller: Caller, invite_id: str) -> bool:
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            actor.read(caller, access.MANAGE)
            invite = s.invites.get(invite_id)
            if invite is None:
                raise NotFound(f"no invite {invite_id!r} in this session")
            if invite.revoked:
                return False
            await actor.store_access(encode_revoke(invite_id, caller.user, now_ms()))
            return True

    async def join(self, caller: Caller, code: str) -> str:
        """Redeems an invite code; returns the caller's role (an existing role is kept)."""
        if not caller.enforced:
            raise InvalidArgument("invites need authentication (AUTH_MODE=jwt)")
        invite_id, digest = invite_id_of(code)
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            invite = s.invites.get(invite_id)
            usable = (
                not s.deleted_ms
                and invite is not None
                and secrets.compare_digest(invite.code_hash, digest)
                and not invite.revoked
                and invite.expires_ms > now_ms()
            )
            if not usable:
                raise NotFound(INVITE_NOT_FOUND)
            assert invite is not None
            if caller.user in s.roles:
                return s.roles[caller.user]
            if caller.user in s.removed:  # the owner removed them: an old invite won't do
                raise NotFound(INVITE_NOT_FOUND)
            entry = encode_grant(caller.user, invite.role, caller.user, now_ms(), invite_id)
            await actor.store_access(entry)
            return invite.role

    def audit(self, caller: Caller, after_seq: int, limit: int) -> tuple[list[AuditRow], bool]:
        """Who did what, from the log, oldest first (owner only)."""
        s = self._actor.read(caller, access.MANAGE)
        rows: list[AuditRow] = []
        for event in s.events_after(after_seq):
            row = audit_row(s, event)
            if row is None:
                continue
            if len(rows) == limit:
                return rows, True
            rows.append(row)
        return rows, False


AuditRow = tuple[int, int, str, str, str]
"""(seq, ts_ms, user, action, detail)."""


def audit_row(s: Session, event: Event) -> AuditRow | None:
    """The audit row of one log event. What an import stored is the importer's action
    "imported", with the imported action and the name the file gave in its detail: never a
    row of the user that file names."""
    row = _recorded_row(s, event)
    by = imported_by_of(event)
    if row is None or by is None:
        return row
    seq, ts_ms, named, action, detail = row
    detail = f"{action} {detail}".strip() + (f", named {named}" if named else "")
    return (seq, ts_ms, by, "imported", detail)


def _recorded_row(s: Session, event: Event) -> AuditRow | None:
    if isinstance(event, MessageAppended):
        m = event.message
        prompted = s.answer_of_prompt.get(m.seq)
        return (m.seq, m.ts_ms, m.user, "prompted" if prompted else "posted", m.role)
    if isinstance(event, StateChanged):
        return (event.seq, event.ts_ms, event.user, "state_changed", f"version {event.version}")
    if isinstance(event, AnswerEnded) and event.cancelled_by:
        detail = f"answer {event.message.answer_seq}"
        return (event.seq, event.ts_ms, event.cancelled_by, "answer_cancelled", detail)
    if isinstance(event, FeedbackChanged):
        detail = f"{event.rating or 'withdrawn'} on {event.message_seq}"
        return (event.seq, event.ts_ms, event.user, "feedback", detail)
    if isinstance(event, ThreadChanged):
        action = "deleted" if event.deleted else "restored" if event.restored else "renamed"
        return (event.seq, event.ts_ms, event.by, action, event.title)
    if isinstance(event, AccessChanged):
        if event.invite_hash:
            return (event.seq, event.ts_ms, event.by, "invite_created", _invite(event))
        if event.revoked:
            return (event.seq, event.ts_ms, event.by, "invite_revoked", event.invite_id)
        if event.invite_id:
            return (event.seq, event.ts_ms, event.by, "joined", _invite(event))
        action = "member_set" if event.role else "member_removed"
        detail = f"{event.user} {event.role}".strip()
        return (event.seq, event.ts_ms, event.by, action, detail)
    return None


def _invite(event: AccessChanged) -> str:
    return f"invite {event.invite_id} {event.role}"
