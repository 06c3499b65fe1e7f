"""Fuzzing AttachmentService over real gRPC with access control on (AUTH_MODE=jwt), as every
caller of the cast (cast.py): the client-streaming UploadAttachment (any chunks: hostile file
names, a name on a later chunk, chunks past 1 MiB, files past MAX_ATTACHMENT_BYTES, bytes that
do not decode) and the server-streaming DownloadAttachment (any session, any sha256, bytes that
do not decode; the room holds one file). Judged as test_fuzz_grpc.py's: never INTERNAL or
UNKNOWN, processes up, no identity no answer, outsiders never get the room's file, and a
refused upload or any download stores nothing (Redis keys and the files under
ATTACHMENTS_DIR, temporary files included).

Replaying a failure: tests/security/fuzz-examples/ (README.md there), as test_fuzz_grpc.py."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from durablechat.v1 import attachments_pb2, common_pb2, session_pb2, session_pb2_grpc
from tests.support.fuzz.cast import Caller, Room
from tests.support.fuzz.outcomes import record
from tests.support.fuzz.settings import MAX_ATTACHMENT_BYTES
from tests.support.fuzz.strategies import fuzz, hostile_text
from tests.support.fuzz.verdict import ACCEPTABLE, Witness
from tests.support.fuzz.wire import decodable_fields, mostly

pytestmark = pytest.mark.slow

SERVICE = "/durablechat.v1.AttachmentService/"
CHUNK_BYTES = 1024 * 1024
TIMEOUT_S = 20.0
ROLES = ("owner", "member", "viewer", "outsider") * 2 + ("anonymous", "expired", "forged")
UNIDENTIFIED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT})
CONTENT = b"the room's file\n"


@pytest.fixture(scope="module")
def shared_sha(channel: grpc.Channel, cast: dict[str, Caller], room: Room) -> str:
    """A file the owner uploaded and attached to a message of the room."""
    upload: Any = channel.stream_unary(SERVICE + "UploadAttachment")
    chunk = attachments_pb2.UploadAttachmentRequest(filename="notes.txt", data=CONTENT)
    reply = attachments_pb2.UploadAttachmentResponse.FromString(
        upload(iter([chunk.SerializeToString()]), metadata=cast["owner"].metadata(), timeout=10)
    )
    session_pb2_grpc.SessionServiceStub(channel).AppendMessage(
        session_pb2.AppendMessageRequest(
            session_id=room.session_id,
            role=common_pb2.ROLE_USER,
            content="see the file",
            attachments=[common_pb2.AttachmentRef(sha256=reply.attachment.sha256)],
        ),
        metadata=cast["owner"].metadata(),
        timeout=10,
    )
    return reply.attachment.sha256


def judged(witness: Witness, caller: Caller, method: str, send: Any) -> tuple[grpc.StatusCode, Any]:
    """Runs `send()` as one call, judged; returns its status and result."""
    what = f"{method} as {caller.role}"
    witness.before()
    try:
        result, code, details = send(), grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        result, code, details = None, exc.code(), exc.details() or ""
    record(f"grpc {method}", code.name)
    assert code in ACCEPTABLE, f"{what} answered {code.name}: {details!r}"
    if not caller.identified:
        assert code in UNIDENTIFIED, f"{what}: {code.name} {details!r}"
    stores = method == "UploadAttachment" and code == grpc.StatusCode.OK
    witness.after(what, stores_nothing=not stores)
    return code, result


def chunks() -> st.SearchStrategy[list[bytes]]:
    """An upload as sent: typed chunks (a name on the first, maybe on later ones too; data up
    to past the file and chunk limits, as a repeated filler so it costs little to draw), with
    stray fields, or bytes that may not decode at all."""
    size = st.one_of(
        st.integers(0, 64),
        st.sampled_from([MAX_ATTACHMENT_BYTES - 1, MAX_ATTACHMENT_BYTES, CHUNK_BYTES + 1]),
    )
    data = st.tuples(st.binary(min_size=1, max_size=8), size).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
    name = mostly(st.sampled_from(["a.txt", "photo.png", "x"]), hostile_text(300))
    typed = st.tuples(mostly(st.just(""), name), data, mostly(st.just(b""), decodable_fields()))
    chunk = typed.map(
        lambda t: (
            attachments_pb2.UploadAttachmentRequest(filename=t[0], data=t[1]).SerializeToString()
            + t[2]
        )
    )
    first = st.tuples(name, data).map(
        lambda t: attachments_pb2.UploadAttachmentRequest(
            filename=t[0], data=t[1]
        ).SerializeToString()
    )
    return st.one_of(
        st.tuples(first, st.lists(chunk, max_size=3)).map(lambda t: [t[0], *t[1]]),
        st.lists(st.binary(max_size=64), max_size=3),
    )


def test_any_upload_as_anyone_never_gets_internal_and_a_refused_one_stores_nothing(
    witness, channel, cast
):
    """Attacks the client-streaming upload: file names with separators, control characters or
    300 characters, a name on a later chunk, empty uploads, chunks over 1 MiB, files at and past
    MAX_ATTACHMENT_BYTES (the temporary file must go too), chunks that do not decode."""
    upload: Any = channel.stream_unary(SERVICE + "UploadAttachment")

    @fuzz(60, "grpc-upload")
    @example(role="owner", sent=[b"\x0a\x05a.txt\x12\x01x", b"\x0a\x01y"])  # a second name
    @example(role="anonymous", sent=[b"\x0a\x05a.txt\x12\x01x"])
    @given(role=st.sampled_from(ROLES), sent=chunks())
    def run(role: str, sent: list[bytes]) -> None:
        caller = cast[role]
        code, reply = judged(
            witness,
            caller,
            "UploadAttachment",
            lambda: upload(iter(sent), metadata=caller.metadata(), timeout=TIMEOUT_S),
        )
        if code == grpc.StatusCode.OK:
            stored = attachments_pb2.UploadAttachmentResponse.FromString(reply).attachment
            assert stored.size <= MAX_ATTACHMENT_BYTES
            assert len(stored.sha256) == 64

    run()


def test_any_download_as_anyone_never_gets_internal_and_outsiders_never_get_the_file(
    witness, channel, cast, room, shared_sha
):
    """Attacks the server-streaming download's access check and parsing: the room's file asked
    for by every caller (outsiders and callers with no identity must get nothing), any session
    id with the file's sha, random and malformed shas. A download stores nothing."""
    download: Any = channel.unary_stream(SERVICE + "DownloadAttachment")
    sids = st.sampled_from([room.session_id] * 3 + ["fz-outsider-download", ""])
    shas = mostly(
        st.just(shared_sha),
        st.one_of(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), hostile_text(80)),
    )

    @fuzz(50, "grpc-download")
    @example(role="outsider", sid=room.session_id, sha=shared_sha, extra=b"", garbage=None)
    @example(role="viewer", sid=room.session_id, sha=shared_sha, extra=b"", garbage=None)
    @example(role="owner", sid="", sha="", extra=b"", garbage=b"\x80")
    @given(
        role=st.sampled_from(ROLES),
        sid=mostly(sids, hostile_text(140)),
        sha=shas,
        extra=mostly(st.just(b""), decodable_fields()),
        garbage=mostly(st.none(), st.binary(max_size=64)),
    )
    def run(role: str, sid: str, sha: str, extra: bytes, garbage: bytes | None) -> None:
        caller = cast[role]
        raw = attachments_pb2.DownloadAttachmentRequest(session_id=sid, sha256=sha)
        sent = raw.SerializeToString() + extra if garbage is None else garbage

        def fetch() -> bytes:
            replies = download(sent, metadata=caller.metadata(), timeout=TIMEOUT_S)
            return b"".join(
                attachments_pb2.DownloadAttachmentResponse.FromString(r).data for r in replies
            )

        code, data = judged(witness, caller, "DownloadAttachment", fetch)
        if role in ("outsider",) and sid == room.session_id:
            assert code != grpc.StatusCode.OK, "an outsider downloaded the room's file"
        if code == grpc.StatusCode.OK:
            assert hashlib.sha256(data).hexdigest() == sha

    run()
