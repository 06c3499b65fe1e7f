"""Fuzzing SearchService (the search indexer's gRPC port) with access control on
(AUTH_MODE=jwt), as every caller of the cast (cast.py): any query (FTS syntax, quotes,
operators, prefixes, control characters, size limits), any session filter, limit and page
token, and bytes that do not decode. Judged as test_fuzz_grpc.py's: never INTERNAL or UNKNOWN,
processes up, no identity no answer, a hit only from a thread the caller has a role in (an
outsider never finds the room's words), and a search stores nothing.

Replaying a failure: tests/security/fuzz-examples/ (README.md there), as test_fuzz_grpc.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from deploy.stack.waits import eventually
from durablechat.v1 import search_pb2
from tests.support.fuzz.cast import Caller, Room
from tests.support.fuzz.outcomes import record
from tests.support.fuzz.strategies import fuzz, hostile_text, uint
from tests.support.fuzz.verdict import ACCEPTABLE
from tests.support.fuzz.wire import decodable_fields, mostly
from tests.support.secure import SecureStack

pytestmark = pytest.mark.slow

SERVICE = "/durablechat.v1.SearchService/"
TIMEOUT_S = 10.0
ROLES = ("owner", "member", "viewer", "outsider") * 2 + ("anonymous", "expired", "alg-none")
UNIDENTIFIED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT})
READERS = ("owner", "member", "viewer")
WORD = "hello"
"""A word of the room (cast.Room posts it); the indexer has it before the fuzzing starts."""
FTS_SYNTAX = ('"', "*", "NEAR(", "AND", "OR", "NOT", "^", ":", "(", ")", "-", "+", "'", "\\")


@pytest.fixture(scope="module")
def search(fuzz_stack: SecureStack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzz_stack.stack.search_addr) as opened:
        yield opened


def queries() -> st.SearchStrategy[str]:
    """The room's word with FTS5 syntax around it, any text, and prefixes of every length."""
    syntax = st.lists(st.sampled_from(FTS_SYNTAX), max_size=4).map("".join)
    mixed = st.tuples(syntax, st.sampled_from([WORD, "hel", "h", ""]), syntax).map("".join)
    return st.one_of(mixed, hostile_text(), st.text(max_size=3).map(lambda t: t + "*"))


def test_any_search_as_anyone_never_gets_internal_and_finds_only_the_callers_threads(
    witness, search, cast: dict[str, Caller], room: Room
):
    """Attacks the query parser and the access filter of search: FTS5 operators, quotes and
    parentheses around the room's word, bare prefixes, hostile text, every session filter
    (the room, others', none, malformed), limits at and past 100, forged page tokens; as every
    caller. Readers of the room may find it; nobody else ever does."""
    method: Any = search.unary_unary(SERVICE + "SearchMessages")
    owner = cast["owner"].metadata()

    def indexed() -> bool:
        request = search_pb2.SearchMessagesRequest(query=WORD)
        reply = search_pb2.SearchMessagesResponse.FromString(
            method(request.SerializeToString(), metadata=owner, timeout=TIMEOUT_S)
        )
        return any(h.session_id == room.session_id for h in reply.hits)

    eventually(indexed, timeout=30)
    sids = st.sampled_from([room.session_id, room.session_id, "", "fz-owner-search"])

    @fuzz(80, "grpc-search")
    @example(role="outsider", query=WORD, sid="", limit=0, token="", extra=b"", garbage=None)
    @example(
        role="outsider", query=WORD, sid=room.session_id, limit=0, token="", extra=b"", garbage=None
    )
    @example(role="owner", query="", sid="", limit=0, token="", extra=b"", garbage=b"\x80")
    @given(
        role=st.sampled_from(ROLES),
        query=queries(),
        sid=mostly(sids, hostile_text(140)),
        limit=mostly(st.sampled_from([0, 1, 100]), st.one_of(st.just(101), uint(32))),
        token=mostly(st.just(""), st.one_of(hostile_text(40), st.from_regex(r"[0-9]{1,30}"))),
        extra=mostly(st.just(b""), decodable_fields()),
        garbage=mostly(st.none(), st.binary(max_size=64)),
    )
    def run(
        role: str, query: str, sid: str, limit: int, token: str, extra: bytes, garbage: bytes | None
    ) -> None:
        caller = cast[role]
        request = search_pb2.SearchMessagesRequest(
            query=query, session_id=sid, limit=limit, page_token=token
        )
        what = f"SearchMessages as {role}"
        witness.before()
        try:
            raw = method(
                garbage if garbage is not None else request.SerializeToString() + extra,
                metadata=caller.metadata(),
                timeout=TIMEOUT_S,
            )
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            raw, code, details = b"", exc.code(), exc.details() or ""
        record("grpc SearchMessages", code.name)
        assert code in ACCEPTABLE, f"{what} answered {code.name}: {details!r}"
        if not caller.identified:
            assert code in UNIDENTIFIED, f"{what}: {code.name} {details!r}"
        if code == grpc.StatusCode.OK and role not in READERS:
            hits = search_pb2.SearchMessagesResponse.FromString(raw).hits
            assert all(h.session_id != room.session_id for h in hits), f"{what} found the room"
        witness.after(what, stores_nothing=True)

    run()
