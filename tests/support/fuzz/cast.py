"""The people the fuzzers act as, on a jwt stack: a room's owner, member and viewer, an outsider,
and callers with no identity (none, an expired token of the owner, one signed with another key,
one with `alg: none`). Each carries its credential for gRPC metadata, HTTP headers and the
WebSocket subprotocol; `Room` sets up the room they share."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import jwt

from common.auth import mint, new_secret
from common.grpc_server import CHANNEL_OPTIONS
from durablechat.v1 import access_pb2, common_pb2, session_pb2, session_pb2_grpc

OWNER, MEMBER, VIEWER, OUTSIDER = "ann", "bob", "vic", "eve"
TOKEN_TTL_S = 3600
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Caller:
    """One identity as a client presents it. `user` is "" for callers the services must not
    identify (they are refused before anything is read or stored)."""

    role: str
    """What the fuzzers call it: owner, member, viewer, outsider, anonymous, expired, forged,
    alg-none."""
    user: str
    token: str

    @property
    def identified(self) -> bool:
        return bool(self.user)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def subprotocols(self) -> list[str]:
        """What a browser's WebSocket offers (docs/security.md): the protocol and the token."""
        return ["durablechat", f"bearer.{self.token}"] if self.token else ["durablechat"]


def _unsigned(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + TOKEN_TTL_S}
    return jwt.encode(claims, "", algorithm="none")


def cast_of(secret: bytes) -> dict[str, Caller]:
    """Every caller, by role. The callers without identity all claim to be the owner."""
    users = {"owner": OWNER, "member": MEMBER, "viewer": VIEWER, "outsider": OUTSIDER}
    cast = {
        role: Caller(role, user, mint(secret, user, TOKEN_TTL_S)) for role, user in users.items()
    }
    expired = mint(secret, OWNER, 60, now=time.time() - 3600)
    cast["anonymous"] = Caller("anonymous", "", "")
    cast["expired"] = Caller("expired", "", expired)
    cast["forged"] = Caller("forged", "", mint(new_secret(), OWNER, TOKEN_TTL_S))
    cast["alg-none"] = Caller("alg-none", "", _unsigned(OWNER))
    return cast


def admin_token(secret: bytes, ttl_s: int = TOKEN_TTL_S) -> str:
    """The operators' credential (issue 15: a JWT with `"dc_admin": true`, as
    `durablechat token --admin` mints it), for the admin calls a test itself needs (HandOff)."""
    now = int(time.time())
    claims = {"sub": "fuzz-admin", "iat": now, "exp": now + ttl_s, "dc_admin": True}
    return jwt.encode(claims, secret, algorithm="HS256")


class Room:
    """A room the owner created, with a member and a viewer, a message and an answered prompt."""

    def __init__(self, address: str, cast: dict[str, Caller]) -> None:
        self._address = address
        self._cast = cast
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            owner = cast["owner"].metadata()
            created = stub.CreateRoom(
                access_pb2.CreateRoomRequest(), metadata=owner, timeout=TIMEOUT_S
            )
            self.session_id = created.session_id
            for who, role in (("member", access_pb2.ACCESS_ROLE_MEMBER), ("viewer", VIEW)):
                stub.SetMember(
                    access_pb2.SetMemberRequest(
                        session_id=self.session_id, user=cast[who].user, role=role
                    ),
                    metadata=owner,
                    timeout=TIMEOUT_S,
                )
            posted = stub.AppendMessage(
                session_pb2.AppendMessageRequest(
                    session_id=self.session_id, role=common_pb2.ROLE_USER, content="hello"
                ),
                metadata=cast["member"].metadata(),
                timeout=TIMEOUT_S,
            )
            self.message_seq: int = posted.message.seq
            """The member's message: what edits, feedback and forks can name."""
            stub.UpdateState(
                session_pb2.UpdateStateRequest(
                    session_id=self.session_id, patch_json='{"step": {"n": 1}}'
                ),
                metadata=owner,
                timeout=TIMEOUT_S,
            )

    def roles(self) -> dict[str, int]:
        """The room's members and their roles, as the owner reads them."""
        with grpc.insecure_channel(self._address, options=CHANNEL_OPTIONS) as channel:
            reply = session_pb2_grpc.SessionServiceStub(channel).GetAccess(
                access_pb2.GetAccessRequest(session_id=self.session_id),
                metadata=self._cast["owner"].metadata(),
                timeout=TIMEOUT_S,
            )
        return {m.user: m.role for m in reply.members}

    def assert_intact(self) -> None:
        """The fuzzing left the cast's roles in the room as they were (the owner may have
        added others), or later examples would mean less."""
        roles = self.roles()
        cast = {OWNER: access_pb2.ACCESS_ROLE_OWNER, MEMBER: access_pb2.ACCESS_ROLE_MEMBER}
        assert {u: roles.get(u) for u in (*cast, VIEWER)} == {**cast, VIEWER: VIEW}


VIEW = access_pb2.ACCESS_ROLE_VIEWER
