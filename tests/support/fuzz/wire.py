"""Protobuf wire data for the gRPC fuzzers: hostile typed requests of every SessionService
method, and extra fields (unknown numbers, every wire type, repeats) spliced onto them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from durablechat.v1 import (
    access_pb2,
    attachments_pb2,
    branches_pb2,
    cluster_pb2,
    export_pb2,
    search_pb2,
    session_pb2,
    threads_pb2,
)
from tests.support.fuzz.strategies import hostile_text, json_text, uint

SERVICE = "/durablechat.v1.SessionService/"
REQUEST_TYPES: dict[str, type[Message]] = {
    "GetSession": session_pb2.GetSessionRequest,
    "UpdateState": session_pb2.UpdateStateRequest,
    "AppendMessage": session_pb2.AppendMessageRequest,
    "ListMessages": session_pb2.ListMessagesRequest,
    "SendPrompt": session_pb2.SendPromptRequest,
    "CancelAnswer": session_pb2.CancelAnswerRequest,
    "GetUserUsage": session_pb2.GetUserUsageRequest,
    "Subscribe": session_pb2.SubscribeRequest,
    "CreateRoom": access_pb2.CreateRoomRequest,
    "SetMember": access_pb2.SetMemberRequest,
    "CreateInvite": access_pb2.CreateInviteRequest,
    "RevokeInvite": access_pb2.RevokeInviteRequest,
    "JoinRoom": access_pb2.JoinRoomRequest,
    "GetAccess": access_pb2.GetAccessRequest,
    "ListAudit": access_pb2.ListAuditRequest,
    "ListThreads": threads_pb2.ListThreadsRequest,
    "SetThreadFlags": threads_pb2.SetThreadFlagsRequest,
    "MarkRead": threads_pb2.MarkReadRequest,
    "RenameThread": threads_pb2.RenameThreadRequest,
    "DeleteThread": threads_pb2.DeleteThreadRequest,
    "RestoreThread": threads_pb2.RestoreThreadRequest,
    "SetFeedback": session_pb2.SetFeedbackRequest,
    "ExportSession": export_pb2.ExportSessionRequest,
    "ImportSession": export_pb2.ImportSessionRequest,
    "EditMessage": branches_pb2.EditMessageRequest,
    "RegenerateAnswer": branches_pb2.RegenerateAnswerRequest,
    "SelectBranch": branches_pb2.SelectBranchRequest,
    "ForkSession": branches_pb2.ForkSessionRequest,
    "GetAttachment": attachments_pb2.GetAttachmentRequest,
}
"""Every SessionService method and its request type (Subscribe is the server stream)."""
OTHER_SERVICES: dict[str, dict[str, type[Message]]] = {
    "durablechat.v1.AttachmentService": {
        "UploadAttachment": attachments_pb2.UploadAttachmentRequest,
        "DownloadAttachment": attachments_pb2.DownloadAttachmentRequest,
    },
    "durablechat.v1.SearchService": {"SearchMessages": search_pb2.SearchMessagesRequest},
    "durablechat.v1.ClusterService": {
        "ListMembers": cluster_pb2.ListMembersRequest,
        "GetPodStatus": cluster_pb2.GetPodStatusRequest,
        "HandOff": cluster_pb2.HandOffRequest,
        "Drain": cluster_pb2.DrainRequest,
    },
}
"""The other services' methods: test_fuzz_attachments.py, test_fuzz_search.py and
test_fuzz_cluster.py fuzz them."""
NOT_FUZZED = {
    "durablechat.v1.AiService": "internal: only pods call it (Generate), with the cluster "
    "credential that issue 15 adds; no client, user token or anonymous caller reaches it",
}
"""Services no fuzzer calls, each with the reason."""


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One field on the wire; `payload` is already encoded for its wire type."""
    return varint(number << 3 | wire_type) + payload


def decodable_fields() -> st.SearchStrategy[bytes]:
    """One to three fields a request type does not declare, of every wire type but groups, of
    any number (also the reserved 19000-19999 and the largest, 2^29 - 1)."""
    number = st.one_of(st.integers(6, 20), st.integers(19_000, 19_999), st.integers(6, 2**29 - 1))
    payloads: list[st.SearchStrategy[tuple[int, bytes]]] = [
        st.builds(lambda v: (0, varint(v)), st.integers(0, 2**64 - 1)),
        st.builds(lambda b: (1, b), st.binary(min_size=8, max_size=8)),
        st.builds(lambda b: (2, varint(len(b)) + b), st.binary(max_size=64)),
        st.builds(lambda b: (5, b), st.binary(min_size=4, max_size=4)),
    ]
    one = st.tuples(number, st.one_of(payloads)).map(lambda t: field(t[0], t[1][0], t[1][1]))
    return st.lists(one, min_size=1, max_size=3).map(b"".join)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` three times in four, else `rare` (one_of would weigh them alike)."""
    return st.integers(0, 3).flatmap(lambda n: rare if n == 0 else usual)


def _ids(targets: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly the fuzz namespace's sessions (so storage checks mean something), else anything."""
    return mostly(targets, hostile_text(140))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def typed_requests(method: str, targets: st.SearchStrategy[str]) -> st.SearchStrategy[Message]:
    """Requests built with the generated types, every field hostile: text from
    `hostile_text`, unsigned ints at their extremes, enum values the proto does not name."""
    sid = _ids(targets)
    names = hostile_text(200)
    access_roles = mostly(st.integers(0, 3), st.integers(-(2**31), 2**31 - 1))
    invite_ids = mostly(st.from_regex(r"[0-9a-f]{16}", fullmatch=True), hostile_text(20))
    roles = mostly(
        st.integers(1, 3), st.one_of(st.integers(0, 4), st.integers(-(2**31), 2**31 - 1))
    )
    seqs = st.one_of(st.integers(0, 8), uint(64))
    export_tokens = st.from_regex(r"[0-9]{1,21}\.[0-9]{1,21}", fullmatch=True)
    page_tokens = st.from_regex(r"[par]\.[0-9]{1,16}\.[a-z0-9-]{1,20}", fullmatch=True)
    builders: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
        "GetSession": lambda: st.builds(session_pb2.GetSessionRequest, session_id=sid),
        "UpdateState": lambda: st.builds(
            _update_state,
            sid,
            json_text(),
            _optional(st.one_of(st.integers(0, 3), uint(64))),
            st.booleans(),
        ),
        "AppendMessage": lambda: st.builds(
            session_pb2.AppendMessageRequest,
            session_id=sid,
            role=roles,
            content=hostile_text(),
            user=mostly(st.just(""), names),
            client_message_id=mostly(st.just(""), names),
            reply_to=mostly(st.just(0), st.one_of(st.integers(0, 8), uint(64))),
        ),
        "ListMessages": lambda: st.builds(
            session_pb2.ListMessagesRequest,
            session_id=sid,
            after_seq=uint(64),
            limit=st.one_of(st.sampled_from([0, 1, 999, 1000, 1001]), uint(32)),
        ),
        "SendPrompt": lambda: st.builds(
            session_pb2.SendPromptRequest,
            session_id=sid,
            content=hostile_text(),
            user=mostly(st.just(""), names),
            client_message_id=mostly(st.just(""), names),
            reply_to=mostly(st.just(0), st.one_of(st.integers(0, 8), uint(64))),
        ),
        "CancelAnswer": lambda: st.builds(
            session_pb2.CancelAnswerRequest,
            session_id=sid,
            answer_seq=st.one_of(st.integers(0, 8), uint(64)),
        ),
        "GetUserUsage": lambda: st.builds(session_pb2.GetUserUsageRequest, user=names),
        "Subscribe": lambda: st.builds(_subscribe, sid, _optional(uint(64)), uint(32)),
        "CreateRoom": lambda: st.builds(
            access_pb2.CreateRoomRequest, session_id=mostly(sid, st.just(""))
        ),
        "SetMember": lambda: st.builds(
            access_pb2.SetMemberRequest, session_id=sid, user=names, role=access_roles
        ),
        "CreateInvite": lambda: st.builds(
            access_pb2.CreateInviteRequest,
            session_id=sid,
            role=access_roles,
            ttl_seconds=st.one_of(st.sampled_from([0, 1, 30 * 86_400, 30 * 86_400 + 1]), uint(32)),
        ),
        "RevokeInvite": lambda: st.builds(
            access_pb2.RevokeInviteRequest, session_id=sid, invite_id=invite_ids
        ),
        "JoinRoom": lambda: st.builds(access_pb2.JoinRoomRequest, session_id=sid, code=names),
        "GetAccess": lambda: st.builds(access_pb2.GetAccessRequest, session_id=sid),
        "ListAudit": lambda: st.builds(
            access_pb2.ListAuditRequest,
            session_id=sid,
            after_seq=uint(64),
            limit=st.one_of(st.sampled_from([0, 1, 999, 1000, 1001]), uint(32)),
        ),
        "ListThreads": lambda: st.builds(
            threads_pb2.ListThreadsRequest,
            archived=st.booleans(),
            limit=st.one_of(st.sampled_from([0, 1, 500, 501]), uint(32)),
            page_token=mostly(page_tokens, names),
        ),
        "SetThreadFlags": lambda: st.builds(
            threads_pb2.SetThreadFlagsRequest,
            session_id=sid,
            pinned=_optional(st.booleans()),
            archived=_optional(st.booleans()),
        ),
        "MarkRead": lambda: st.builds(threads_pb2.MarkReadRequest, session_id=sid),
        "RenameThread": lambda: st.builds(
            threads_pb2.RenameThreadRequest, session_id=sid, title=hostile_text(300)
        ),
        "DeleteThread": lambda: st.builds(threads_pb2.DeleteThreadRequest, session_id=sid),
        "RestoreThread": lambda: st.builds(threads_pb2.RestoreThreadRequest, session_id=sid),
        "SetFeedback": lambda: st.builds(
            session_pb2.SetFeedbackRequest,
            session_id=sid,
            message_seq=st.one_of(st.integers(0, 8), uint(64)),
            rating=access_roles,
            comment=hostile_text(2100),
            user=names,
        ),
        "ExportSession": lambda: st.builds(
            export_pb2.ExportSessionRequest, session_id=sid, page_token=mostly(export_tokens, names)
        ),
        "EditMessage": lambda: st.builds(
            branches_pb2.EditMessageRequest,
            session_id=sid,
            message_seq=seqs,
            content=hostile_text(),
        ),
        "RegenerateAnswer": lambda: st.builds(
            branches_pb2.RegenerateAnswerRequest, session_id=sid, message_seq=seqs
        ),
        "SelectBranch": lambda: st.builds(
            branches_pb2.SelectBranchRequest, session_id=sid, message_seq=seqs
        ),
        "ForkSession": lambda: st.builds(
            branches_pb2.ForkSessionRequest,
            session_id=sid,
            at_seq=seqs,
            new_session_id=mostly(st.just(""), hostile_text(140)),
        ),
        "GetAttachment": lambda: st.builds(
            attachments_pb2.GetAttachmentRequest,
            session_id=sid,
            sha256=mostly(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), names),
        ),
        "ImportSession": lambda: st.builds(
            export_pb2.ImportSessionRequest,
            session_id=mostly(sid, st.just("")),
            jsonl=st.one_of(export_files(), hostile_text(500)),
        ),
    }
    return builders[method]()


def _update_state(
    session_id: str, patch_json: str, expected: int | None, return_state: bool
) -> session_pb2.UpdateStateRequest:
    request = session_pb2.UpdateStateRequest(
        session_id=session_id, patch_json=patch_json, return_state=return_state
    )
    if expected is not None:
        request.expected_version = expected
    return request


def _subscribe(session_id: str, after_seq: int | None, after_offset: int) -> Message:
    request = session_pb2.SubscribeRequest(session_id=session_id, after_offset=after_offset)
    if after_seq is not None:
        request.after_seq = after_seq
    return request


def parsed(method: str, data: bytes) -> Message | None:
    """The request the server will see in `data`, or None when protobuf cannot decode it."""
    try:
        return REQUEST_TYPES[method].FromString(data)
    except DecodeError:
        return None


def export_files() -> st.SearchStrategy[str]:
    """Export files (docs/export.md) with a valid header and hostile events: near misses of
    the real line shapes, so the import's checks are reached rather than its JSON parser."""
    header = '{"format":"durablechat.session","version":1}'
    numbers = st.one_of(st.integers(0, 4), st.integers(-(2**70), 2**70), st.booleans())
    line = st.fixed_dictionaries(
        {
            "n": numbers,
            "type": st.sampled_from(
                ["message", "state", "answer_started", "answer_ended", "renamed", "feedback", "x"]
            ),
            "time": numbers,
        },
        optional={
            "role": st.sampled_from(["user", "assistant", "system", "root"]),
            "content": hostile_text(80),
            "user": hostile_text(20),
            "replyTo": numbers,
            "prompt": numbers,
            "answer": numbers,
            "message": numbers,
            "version": numbers,
            "patch": st.dictionaries(hostile_text(5), st.one_of(st.none(), numbers)),
            "status": st.sampled_from(["completed", "failed", "cancelled", "nope"]),
            "rating": st.sampled_from(["up", "down", "", "meh"]),
            "comment": hostile_text(20),
            "title": hostile_text(30),
            "by": hostile_text(10),
            "usage": st.dictionaries(st.sampled_from(["prompt", "completion", "x"]), numbers),
        },
    )
    return st.lists(line.map(json.dumps), max_size=6).map(lambda rows: "\n".join([header, *rows]))
