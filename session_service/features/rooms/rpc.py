"""The access RPCs of `durablechat.v1.SessionService` (access.proto): rooms, members, invites,
presence and audit. Each validates its request; the dispatcher (session_service/rpc/dispatch.py)
authenticates and routes it to the session's owner exactly as for the other RPCs."""

from __future__ import annotations

import secrets

from durablechat.v1 import access_pb2
from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.features.rooms.ops import RoomOps
from session_service.log import validate
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher, Local
from session_service.rpc.methods import (
    CREATE_INVITE,
    CREATE_ROOM,
    GET_ACCESS,
    JOIN_ROOM,
    LIST_AUDIT,
    REVOKE_INVITE,
    SET_MEMBER,
)

AUDIT_PAGE_DEFAULT = 100
AUDIT_PAGE_MAX = 1000
INVITE_ID_LENGTH = 16


def _role(value: int, field: str) -> str:
    role = convert.ACCESS_ROLE_FROM_PROTO.get(access_pb2.AccessRole.ValueType(value))
    if role is None:
        raise InvalidArgument(f"{field} is not a known AccessRole")
    return role


class RoomRpcs:
    """Rooms, members, invites, access and audit, routed through the shared dispatcher."""

    def __init__(self, dispatch: Dispatcher) -> None:
        self._dispatch = dispatch

    async def CreateRoom(
        self, request: access_pb2.CreateRoomRequest, context: Context
    ) -> access_pb2.CreateRoomResponse:
        if getattr(request, "session_id", None) == "":  # (not when undecodable: refused below)
            request = access_pb2.CreateRoomRequest(session_id=secrets.token_hex(32))
        sid = getattr(request, "session_id", "")

        def prepare(caller: Caller) -> Local[access_pb2.CreateRoomResponse]:
            async def create(actor: SessionActor) -> access_pb2.CreateRoomResponse:
                role = await RoomOps(actor).claim(caller)
                return access_pb2.CreateRoomResponse(
                    session_id=sid,
                    role=convert.ACCESS_ROLE_TO_PROTO[role],
                    share_path=convert.share_path(sid),
                    epoch=actor.session.epoch,
                )

            return create

        return await self._dispatch.unary(CREATE_ROOM, request, context, prepare)

    async def SetMember(
        self, request: access_pb2.SetMemberRequest, context: Context
    ) -> access_pb2.SetMemberResponse:
        def prepare(caller: Caller) -> Local[access_pb2.SetMemberResponse]:
            user = validate.name(request.user, "user")
            if not user:
                raise InvalidArgument("user must not be empty")
            role = _role(request.role, "role")

            async def set_member(actor: SessionActor) -> access_pb2.SetMemberResponse:
                seq = await RoomOps(actor).set_member(caller, user, role)
                return access_pb2.SetMemberResponse(seq=seq, epoch=actor.session.epoch)

            return set_member

        return await self._dispatch.unary(SET_MEMBER, request, context, prepare)

    async def CreateInvite(
        self, request: access_pb2.CreateInviteRequest, context: Context
    ) -> access_pb2.CreateInviteResponse:
        def prepare(caller: Caller) -> Local[access_pb2.CreateInviteResponse]:
            role = _role(request.role, "role")

            async def create(actor: SessionActor) -> access_pb2.CreateInviteResponse:
                code, invite = await RoomOps(actor).create_invite(caller, role, request.ttl_seconds)
                return access_pb2.CreateInviteResponse(
                    code=code,
                    invite_id=invite.invite_id,
                    expires_at=convert.timestamp(invite.expires_ms),
                    share_path=convert.share_path(request.session_id, code),
                )

            return create

        return await self._dispatch.unary(CREATE_INVITE, request, context, prepare)

    async def RevokeInvite(
        self, request: access_pb2.RevokeInviteRequest, context: Context
    ) -> access_pb2.RevokeInviteResponse:
        def prepare(caller: Caller) -> Local[access_pb2.RevokeInviteResponse]:
            invite_id = request.invite_id
            if len(invite_id) != INVITE_ID_LENGTH or not set(invite_id) <= set("0123456789abcdef"):
                raise InvalidArgument("invite_id must be the 16 hex digits CreateInvite returned")

            async def revoke(actor: SessionActor) -> access_pb2.RevokeInviteResponse:
                revoked = await RoomOps(actor).revoke_invite(caller, invite_id)
                return access_pb2.RevokeInviteResponse(revoked=revoked)

            return revoke

        return await self._dispatch.unary(REVOKE_INVITE, request, context, prepare)

    async def JoinRoom(
        self, request: access_pb2.JoinRoomRequest, context: Context
    ) -> access_pb2.JoinRoomResponse:
        def prepare(caller: Caller) -> Local[access_pb2.JoinRoomResponse]:
            if not request.code or len(request.code) > 128:
                raise InvalidArgument("code must be the invite code (1 to 128 characters)")

            async def join(actor: SessionActor) -> access_pb2.JoinRoomResponse:
                role = await RoomOps(actor).join(caller, request.code)
                return access_pb2.JoinRoomResponse(
                    role=convert.ACCESS_ROLE_TO_PROTO[role], epoch=actor.session.epoch
                )

            return join

        return await self._dispatch.unary(JOIN_ROOM, request, context, prepare)

    async def GetAccess(
        self, request: access_pb2.GetAccessRequest, context: Context
    ) -> access_pb2.GetAccessResponse:
        def prepare(caller: Caller) -> Local[access_pb2.GetAccessResponse]:
            async def get(actor: SessionActor) -> access_pb2.GetAccessResponse:
                s = actor.read(caller)
                role = access.role_of(s, caller)
                online = set(s.online())
                out = access_pb2.GetAccessResponse(
                    owner=s.owner, your_role=convert.ACCESS_ROLE_TO_PROTO[role]
                )
                for user, member_role in s.roles.items():
                    out.members.add(
                        user=user,
                        role=convert.ACCESS_ROLE_TO_PROTO[member_role],
                        online=user in online,
                    )
                if role == access.OWNER or not caller.enforced:
                    for invite in s.invites.values():
                        out.invites.add(
                            invite_id=invite.invite_id,
                            role=convert.ACCESS_ROLE_TO_PROTO[invite.role],
                            expires_at=convert.timestamp(invite.expires_ms),
                            created_by=invite.created_by,
                            revoked=invite.revoked,
                        )
                return out

            return get

        return await self._dispatch.unary(GET_ACCESS, request, context, prepare)

    async def ListAudit(
        self, request: access_pb2.ListAuditRequest, context: Context
    ) -> access_pb2.ListAuditResponse:
        def prepare(caller: Caller) -> Local[access_pb2.ListAuditResponse]:
            limit = request.limit or AUDIT_PAGE_DEFAULT
            if limit > AUDIT_PAGE_MAX:
                raise InvalidArgument(f"limit must be at most {AUDIT_PAGE_MAX}")

            async def audit(actor: SessionActor) -> access_pb2.ListAuditResponse:
                rows, has_more = RoomOps(actor).audit(caller, request.after_seq, limit)
                out = access_pb2.ListAuditResponse(has_more=has_more)
                for seq, ts_ms, user, action, detail in rows:
                    out.entries.add(
                        seq=seq,
                        time=convert.timestamp(ts_ms),
                        user=user,
                        action=action,
                        detail=detail,
                    )
                return out

            return audit

        return await self._dispatch.unary(LIST_AUDIT, request, context, prepare)
