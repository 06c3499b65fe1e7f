"""Fuzzing every route of the gateway's HTTP API over real HTTP with access control on
(AUTH_MODE=jwt). Each example calls one route (rest_routes.py lists them all; a route the
gateway serves without an entry there fails test_every_gateway_route_is_fuzzed) as one of the
cast (cast.py), with route-shaped bodies holding hostile values, any bytes or JSON, any path
segment, query and Last-Event-ID, and HEAD on every GET route. Judged: no 5xx; every 4xx is
`{"error": {"code", "message"}}`; callers with no identity get 401 (or a 4xx from routing or
parsing) outside the public routes; an outsider never gets a 2xx about the room, a viewer never
writes it, a member never manages it; and a refusal, or a read, stores nothing: the Redis keys
(SCAN + DUMP) and attachment files before and after are equal (verdict.py).

Replaying a failure: hypothesis saves the failing example in tests/security/fuzz-examples/
(committed; see its README.md) and the next run of the same test replays it first, e.g.
`.venv/bin/python -m pytest tests/security/test_fuzz_rest.py -k "events"`; or paste the
printed `@reproduce_failure` line onto the failing run."""

from __future__ import annotations

import http.client as http_client
import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.support.fuzz.cast import Caller, Room
from tests.support.fuzz.outcomes import record
from tests.support.fuzz.raw_http import RawHttp, Reply
from tests.support.fuzz.rest_routes import ROLES, ROUTES, Route, bodies, gateway_routes
from tests.support.fuzz.strategies import digit_runs, fuzz, hostile_text
from tests.support.fuzz.verdict import Witness
from tests.support.fuzz.wire import mostly
from tests.support.secure import SecureStack

pytestmark = pytest.mark.slow

API = "/api/chat/session/"
MAX_CONTENT_BYTES = 65_536
"""The session service's default MAX_CONTENT_BYTES."""
HISTORY_MESSAGES = 260
"""Messages of MAX_CONTENT_BYTES whose page is over gRPC's 16 MiB message limit."""
MAX_LINE = 8190
"""aiohttp's longest request line and header; longer ones are test_an_over_long_request_...'s."""
SHORT = 129
"""Longest generated segment or query text: past the 128-character limits, far under MAX_LINE."""
RAW_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")
"""What a request line can carry unencoded (no space, no control character, no fragment)."""
UNIDENTIFIED_STATUSES = frozenset({400, 401, 404, 405, 413})
"""What a caller with no identity may get outside the public routes: 401, or a refusal of the
request's form that reads nothing about any session."""
PAGE_NOT_BUILT = 503
"""The page routes' answer when `make web` has not built the page (gateway/page.py)."""


@pytest.fixture(scope="module")
def http(fuzz_stack: SecureStack) -> Iterator[RawHttp]:
    client = RawHttp(fuzz_stack.stack.gateway_url)
    try:
        yield client
    finally:
        client.close()


def test_every_gateway_route_is_fuzzed() -> None:
    """Guards the battery itself: a route added to the gateway fails here until rest_routes.py
    says how to fuzz it. HEAD routes are the GET routes' (the fuzzer sends HEAD to those)."""
    served = gateway_routes()
    gets = {path for method, path in served if method == "GET"}
    assert {path for method, path in served if method == "HEAD"} <= gets
    assert {r for r in served if r[0] != "HEAD"} == set(ROUTES)


def judge(surface: str, reply: Reply) -> None:
    """No 5xx; an error is the one JSON error shape; any JSON body is strict JSON."""
    record(f"rest {surface}", str(reply.status))
    page = reply.status == PAGE_NOT_BUILT and surface.split()[1] in ("/", "/app.js", "/app.css")
    assert reply.status < 500 or page, f"{surface} answered {reply.status}: {reply.body[:300]!r}"
    if reply.status >= 400 and reply.body:
        assert reply.content_type.startswith("application/json"), reply.content_type
        body = reply.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
        assert isinstance(body["error"]["message"], str), body
    elif reply.content_type.startswith("application/json") and reply.body:
        reply.json()


def forbidden(role: str, route: Route, on_room: bool) -> bool:
    """Whether `role` must never get a 2xx on this route about the room."""
    if not on_room or role == "owner" or route.kind == "public":
        return False
    return (
        role == "outsider" or route.kind == "manage" or (role == "viewer" and route.kind == "write")
    )


def segments(room: Room, role: str, owner_keeps_off: bool) -> st.SearchStrategy[str]:
    """A session id segment: mostly the room or the caller's own, else any text
    percent-encoded, or printable ASCII as it is (bad escapes such as %zz)."""
    own = f"fz-{role}-rest"
    usual = st.just(own) if owner_keeps_off else st.sampled_from([room.session_id, own])
    encoded = hostile_text(140, longest=SHORT).map(lambda t: urllib.parse.quote(t, safe=""))
    raw = st.text(alphabet=RAW_CHARS.filter(lambda c: c not in "/?"), min_size=1, max_size=SHORT)
    return mostly(usual, st.one_of(encoded, raw))


def queries(params: tuple[str, ...]) -> st.SearchStrategy[str]:
    """The route's parameters (and others) with digit runs of any length, signs, exponents,
    booleans and hostile text, encoded or raw, repeated or not."""
    value = st.one_of(
        digit_runs(),
        st.sampled_from(["-1", "1e3", "0x10", " 1", "+1", "١٢", "18446744073709551616", "true"]),
        hostile_text(longest=SHORT),
    )
    names = st.sampled_from(params) if params else st.just("x")
    pair = st.tuples(mostly(names, st.sampled_from(["after", "limit", "user"])), value).map(
        lambda kv: f"{kv[0]}={urllib.parse.quote(kv[1], safe='')}"
    )
    raw = st.text(alphabet=RAW_CHARS, max_size=40)
    return mostly(st.lists(pair, max_size=2).map("&".join), raw)


def last_event_ids() -> st.SearchStrategy[str]:
    """Last-Event-ID values: cursors with digit runs of any length, and Latin-1 junk."""
    junk = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=40,
    )
    cursor = st.tuples(digit_runs(), digit_runs()).map(lambda t: f"{t[0]}:{t[1]}")
    return st.one_of(junk, cursor)


def fill(path: str, segment: str, seq: str, sha: str) -> str:
    return (
        path.replace("{session_id}", segment)
        .replace("{thread_id}", segment)
        .replace("{seq}", seq)
        .replace("{sha256}", sha)
    )


@pytest.mark.parametrize("key", list(ROUTES), ids=" ".join)
def test_every_route_as_anyone_never_gets_a_5xx_and_a_refusal_stores_nothing(
    key, fuzz_stack, http, witness: Witness, cast: dict[str, Caller], room: Room
):
    """Attacks every route as every caller: the body, path parameters, query and
    Last-Event-ID as above, and an extra path segment now and then (a JSON 404, never
    another route)."""
    method, path = key
    route = ROUTES[key]

    @fuzz(25, f"rest-{method}-{path}")
    @example(
        role="outsider",
        on_room=True,
        body=None,
        query="",
        seq="2",
        extra=False,
        head=False,
        cursor=None,
    )
    @example(
        role="anonymous",
        on_room=True,
        body=None,
        query="",
        seq="2",
        extra=False,
        head=False,
        cursor=None,
    )
    @example(
        role="viewer",
        on_room=True,
        body=None,
        query="",
        seq="2",
        extra=False,
        head=False,
        cursor=None,
    )
    @given(
        role=st.sampled_from(ROLES),
        on_room=st.booleans(),
        body=bodies(route.body),
        query=mostly(st.just(""), queries(route.query)),
        seq=mostly(st.just(str(room.message_seq)), st.one_of(digit_runs(), hostile_text(20))),
        extra=mostly(st.just(False), st.just(True)),
        head=st.booleans(),
        cursor=mostly(st.none(), last_event_ids()),
    )
    def run(role, on_room, body, query, seq, extra, head, cursor) -> None:
        caller = cast[role]
        headers = caller.headers()
        if cursor is not None and path.endswith("/events"):
            headers["Last-Event-ID"] = cursor
        keeps_off = role == "owner" and route.kind == "manage"
        on_room = on_room and ("{session_id}" in path or "{thread_id}" in path)
        segment = room.session_id if on_room and not keeps_off else f"fz-{role}-rest"
        target = fill(path, urllib.parse.quote(segment, safe=""), urllib.parse.quote(seq), "0" * 64)
        target += "/x" if extra else ""
        query = query or route.usual
        target += f"?{query}" if query else ""
        verb = "HEAD" if head and method == "GET" else method
        assume(len(target) < MAX_LINE - 20)
        what = f"{verb} {path} as {role}"
        witness.before()
        reply = http.request(verb, target, body, headers)
        judge(f"{verb} {path}", reply)
        if not caller.identified and route.kind != "public" and not extra:
            assert reply.status in UNIDENTIFIED_STATUSES, f"{what}: {reply.status}"
        if forbidden(role, route, on_room and not keeps_off) and not extra:
            assert reply.status >= 300, f"{what} on the room answered {reply.status}"
        refused = reply.status >= 400
        if not refused and reply.content_type.startswith("application/json") and reply.body:
            answer = reply.json()
            if isinstance(answer, dict) and answer.get("answerSeq"):
                witness.started(segment, int(answer["answerSeq"]), caller.metadata())
        reads = route.kind in ("read", "public") or verb == "HEAD"
        witness.after(what, stores_nothing=refused or reads, claiming=route.claims)

    run()


def test_any_session_segment_on_the_session_routes_is_a_json_4xx_or_answered(
    fuzz_stack, http, witness: Witness, cast: dict[str, Caller], room: Room
):
    """Attacks routing and id parsing: arbitrary session id segments (encoded slashes, dot
    segments, bad escapes, 129+ characters) on every session route, as the room's member."""
    member = cast["member"]
    paths = [key for key in ROUTES if "{session_id}" in key[1]]

    @fuzz(60, "rest-segments")
    @example(key=("GET", API + "{session_id}"), segment="..")
    @given(key=st.sampled_from(paths), segment=segments(room, "member", False))
    def run(key: tuple[str, str], segment: str) -> None:
        method, path = key
        target = fill(path, segment, "2", "0" * 64)
        assume(len(target) < MAX_LINE - 20)
        witness.before()
        reply = http.request(method, target, None, member.headers())
        judge(f"{method} {path}", reply)
        reads = ROUTES[key].kind == "read"
        refused = reply.status >= 400
        witness.after(
            f"{method} {target} as member",
            stores_nothing=refused or reads,
            claiming=ROUTES[key].claims,
        )

    run()


STREAMED = ("/export", "/events", "/attachments/{sha}")
"""The GET routes that stream their body (StreamResponse), relative to the room."""


@pytest.mark.parametrize("suffix", STREAMED)
def test_a_head_on_a_streamed_route_sends_no_body_to_desync_the_connection(
    suffix, fuzz_stack, http, cast: dict[str, Caller], room: Room
):
    """Attacks keep-alive framing: a HEAD on a route that streams its body must answer with
    headers only. It sent the body (found by this fuzzer), so the next response on the same
    connection began inside it: a client, or a proxy that pools connections, reads one
    request's bytes as another's response."""
    owner = cast["owner"].headers()
    if "{sha}" in suffix:
        upload = http.request("POST", "/api/attachments?filename=a.txt", b"head", owner)
        sha = upload.json()["sha256"]
        body = json.dumps({"role": "user", "content": "file", "attachments": [{"sha256": sha}]})
        posted = http.request("POST", API + room.session_id + "/messages", body.encode(), owner)
        assert posted.status == 201, posted
        suffix = suffix.replace("{sha}", sha)
    base = f"/api/threads/{room.session_id}" if suffix == "/export" else API + room.session_id
    host, port = fuzz_stack.stack.gateway_url.removeprefix("http://").split(":")
    connection = http_client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("HEAD", base + suffix, headers=owner)
        head = connection.getresponse()
        head.read()
        assert head.status == 200
        connection.request("GET", "/api/me", headers=owner)  # the same connection
        after = connection.getresponse()
        assert after.status == 200
        assert json.loads(after.read())["user"] == cast["owner"].user
    finally:
        connection.close()


def test_the_history_of_a_thread_of_maximal_messages_stays_readable(fuzz_stack, http, cast):
    """Attacks the history page size: 260 messages of 64 KiB (each within every limit) make
    one 1000-message page larger than gRPC's 16 MiB message limit. The whole history must
    still be readable over REST, or any participant can make a thread's history unreadable for
    everyone, for good: GET session answers the newest messages within MAX_HISTORY_REPLY_BYTES
    and counts the older ones, which `GET .../messages` pages."""
    sid = "fz-owner-history"
    headers = cast["owner"].headers()
    body = json.dumps({"role": "user", "content": "x" * MAX_CONTENT_BYTES}).encode()
    for _ in range(HISTORY_MESSAGES):
        assert http.request("POST", API + sid + "/messages", body, headers).status == 201
    reply = http.request("GET", API + sid, None, headers)
    judge("GET session-of-a-long-history", reply)
    assert reply.status == 200, reply.body[:300]
    session = reply.json()
    shown = len(session["messages"])
    assert shown > 0
    assert shown + session["olderMessages"]["omitted"] == HISTORY_MESSAGES
    read, after, more = 0, 0, True
    while more:
        page = http.request("GET", f"{API}{sid}/messages?after={after}&limit=1000", None, headers)
        assert page.status == 200, page.body[:300]
        messages = page.json()["messages"]
        read += len(messages)
        more = page.json()["hasMore"]
        after = messages[-1]["seq"] if messages else after
    assert read == HISTORY_MESSAGES


OVER_LONG = {
    "path": lambda n: ("GET", API + "x" * n, {}),
    "query": lambda n: ("GET", API + "fz-rest-get/messages?user=" + "x" * n, {}),
    "header": lambda n: ("GET", API + "fz-rest-get", {"X-Fuzz": "x" * n}),
}


@pytest.mark.parametrize("where", list(OVER_LONG))
def test_an_over_long_request_line_or_header_is_refused_with_400(where, fuzz_stack, http):
    """Attacks the HTTP parser's limits (8190 bytes per request line or header): an over-long
    request is refused with 400. It is refused by aiohttp's parser before the application sees
    it, so its body is aiohttp's plain text, not the JSON error shape (docs/security.md)."""

    @fuzz(4, f"rest-over-long-{where}")
    @example(size=MAX_LINE + 1)
    @given(size=st.integers(MAX_LINE + 1, 4 * MAX_LINE))
    def run(size: int) -> None:
        method, target, headers = OVER_LONG[where](size)
        reply = http.request(method, target, None, headers)
        record(f"rest over-long {where}", str(reply.status))
        assert reply.status == 400, reply

    run()
