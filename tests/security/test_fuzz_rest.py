"""Fuzzing the gateway's REST API over real HTTP: any bytes or JSON as the body of every route
that reads one, any path segment and query value on the GET routes. The gateway may refuse,
never fail: no 5xx, every 4xx is `{"error": {"code", "message"}}`, and a refusal stores nothing."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.security.outcomes import record
from tests.security.raw_http import RawHttp, Reply
from tests.security.stored import WriteLedger, storable
from tests.security.strategies import (
    digit_runs,
    fuzz,
    hostile_text,
    json_text,
    json_values,
)
from tests.security.wire import mostly
from tests.stack import Stack

API = "/api/chat/session/"
MIB = 1024 * 1024
BODY_LIMIT = 4 * MIB
MAX_CONTENT_BYTES = 65_536
"""The session service's default MAX_CONTENT_BYTES."""
HISTORY_MESSAGES = 260
"""Messages of MAX_CONTENT_BYTES whose page is over gRPC's 16 MiB message limit."""
"""The gateway's default HTTP_MAX_BODY_BYTES."""
RESERVED_KEYS = ("messages", "createdAt", "lastAccessedAt")
ROLES = ("user", "assistant", "system")
MAX_LINE = 8190
"""aiohttp's longest request line and header; longer ones are test_an_over_long_request_...'s."""
SHORT = 129
"""Longest generated segment or query text: past the 128-character limits, far under MAX_LINE."""
RAW_QUERY_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")
"""What a request line can carry unencoded (no space, no control character, no fragment)."""


@pytest.fixture(scope="module")
def http(fuzz_stack: Stack) -> Iterator[RawHttp]:
    client = RawHttp(fuzz_stack.gateway_url)
    try:
        yield client
    finally:
        client.close()


def judge(surface: str, reply: Reply) -> None:
    """No 5xx; an error is the one JSON error shape; any JSON body is strict JSON."""
    record(f"rest {surface}", str(reply.status))
    assert reply.status < 500, f"{surface} answered {reply.status}: {reply.body[:300]!r}"
    if reply.status >= 400:
        assert reply.content_type.startswith("application/json"), reply.content_type
        body = reply.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
        assert isinstance(body["error"]["message"], str), body
    elif reply.content_type.startswith("application/json"):
        reply.json()


def send(
    http: RawHttp,
    ledger: WriteLedger,
    fuzz_stack: Stack,
    surface: str,
    method: str,
    target: str,
    sessions: set[str],
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request, judged; a refusal must leave `sessions` as they were."""
    assume(len(target) < MAX_LINE - 20)
    assume(all(len(k) + len(v) < MAX_LINE - 2 for k, v in (headers or {}).items()))
    before = {sid: ledger.known(sid) for sid in sessions}
    reply = http.request(method, target, body, headers)
    judge(surface, reply)
    assert fuzz_stack.gateway is not None and fuzz_stack.gateway.alive(), "the gateway died"
    after = {sid: ledger.writes(sid) for sid in sessions}
    if reply.status >= 400:
        assert after == before, f"{surface} refused with {reply.status} but stored"
    return reply


def bodies(route: str) -> st.SearchStrategy[bytes]:
    """Mostly objects shaped like the route's input, with hostile values, wrong types, stray
    or reserved keys; else any bytes, any JSON value, or JSON-ish text (deep nesting, numbers
    out of range)."""
    message = st.fixed_dictionaries(
        {"role": mostly(st.sampled_from(ROLES), json_values()), "content": hostile_text()},
        optional={
            "user": mostly(hostile_text(200), json_values()),
            "clientMessageId": mostly(hostile_text(200), json_values()),
            "extra": json_values(),
        },
    )
    patch = st.dictionaries(
        mostly(hostile_text(16), st.sampled_from(RESERVED_KEYS)), json_values(), max_size=5
    )
    shaped = message if route == "POST messages" else patch
    anything = st.one_of(
        st.binary(max_size=512),
        json_values().map(json.dumps),
        json_text(),
    )
    return mostly(shaped.map(json.dumps), anything).map(
        lambda body: body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    )


BODY_ROUTES = {
    "PUT session": ("PUT", "", "expectedVersion"),
    "POST messages": ("POST", "/messages", ""),
    "POST cancel": ("POST", "/cancel", "answerSeq"),
}
"""Every route that takes a body (cancel reads none, so any body must change nothing), with
the query parameter it reads."""


@pytest.mark.parametrize("route", list(BODY_ROUTES))
def test_any_body_is_refused_with_a_json_4xx_or_accepted_and_never_a_5xx(
    route, fuzz_stack, http, ledger
):
    """Attacks body parsing: arbitrary bytes (invalid UTF-8, truncated JSON), any JSON value
    (lone surrogate escapes, huge and tiny numbers, nesting), route-shaped objects with wrong
    types, unknown and reserved keys, and bodies over the 4 MiB limit."""
    method, suffix, param = BODY_ROUTES[route]
    sid = "fz-rest-" + route.split()[1]

    @fuzz(80)
    @example(body=b"x" * (BODY_LIMIT + 1), query="")
    @example(body=b"{}", query="9" * 4301)  # past CPython's int() digit limit
    @given(
        body=bodies(route),
        query=mostly(st.just(""), st.one_of(digit_runs(), hostile_text(longest=SHORT))),
    )
    def run(body: bytes, query: str) -> None:
        target = API + sid + suffix
        if query and param:
            target += f"?{param}=" + urllib.parse.quote(query, safe="")
        send(http, ledger, fuzz_stack, route, method, target, {sid}, body)

    run()


GET_ROUTES = {"GET session": "", "GET messages": "/messages", "GET events": "/events"}
QUERY_PARAMS = ("after", "limit", "expectedVersion", "answerSeq", "user")


def segments() -> st.SearchStrategy[str]:
    """A path segment as sent: any text percent-encoded (slashes, dots, NUL, non-ASCII
    included), or printable ASCII as it is (bad escapes such as %zz or %ff)."""
    encoded = st.one_of(hostile_text(140, longest=SHORT), st.just("fz-rest-get")).map(
        lambda text: urllib.parse.quote(text, safe="")
    )
    raw = st.text(
        alphabet=RAW_QUERY_CHARS.filter(lambda c: c not in "/?"), min_size=1, max_size=SHORT
    )
    return st.one_of(encoded, raw)


def queries() -> st.SearchStrategy[str]:
    """A query string: the routes' parameters (and others) with digit runs of any length,
    signs, exponents and hostile text, encoded or raw, repeated or not."""
    value = st.one_of(
        digit_runs(),
        st.sampled_from(["-1", "1e3", "0x10", " 1", "1 ", "+1", "١٢", "18446744073709551616"]),
        hostile_text(longest=SHORT),
    )
    pair = st.tuples(st.sampled_from(QUERY_PARAMS), value).map(
        lambda kv: f"{kv[0]}={urllib.parse.quote(kv[1], safe='')}"
    )
    raw = st.text(alphabet=RAW_QUERY_CHARS, max_size=40)
    return st.one_of(st.lists(pair, max_size=2).map("&".join), raw)


def last_event_ids() -> st.SearchStrategy[str]:
    """Last-Event-ID values: cursors with digit runs of any length, and Latin-1 junk."""
    junk = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=40,
    )
    cursor = st.tuples(digit_runs(), digit_runs()).map(lambda t: f"{t[0]}:{t[1]}")
    return st.one_of(junk, cursor)


@pytest.mark.parametrize("route", list(GET_ROUTES))
def test_any_path_segment_and_query_is_refused_with_a_json_4xx_or_answered_never_a_5xx(
    route, fuzz_stack, http, ledger
):
    """Attacks routing and query parsing on the GET routes: arbitrary session id segments
    (encoded slashes, dot segments, bad escapes, 129+ characters), numeric parameters as digit
    runs past CPython's int() limit, signs and exponents, and hostile Last-Event-ID headers."""
    suffix = GET_ROUTES[route]

    @fuzz(60)
    @example(segment="fz-rest-get", query="after=" + "9" * 4301, last_event_id=None)
    @given(
        segment=mostly(st.just("fz-rest-get"), segments()),
        query=queries(),
        last_event_id=mostly(st.none(), last_event_ids()),
    )
    def run(segment: str, query: str, last_event_id: str | None) -> None:
        target = API + segment + suffix + (f"?{query}" if query else "")
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else None
        sid = urllib.parse.unquote(segment)
        sessions = {"fz-rest-get"} | ({sid} if storable(sid) else set())
        send(http, ledger, fuzz_stack, route, "GET", target, sessions, headers=headers)

    run()


def test_the_history_of_a_thread_of_maximal_messages_stays_readable(fuzz_stack, http):
    """Attacks the history page size: 260 messages of 64 KiB (each within every limit) make
    one 1000-message page larger than gRPC's 16 MiB message limit. The whole history must
    still be readable over REST, or any participant can make a thread's history unreadable for
    everyone, for good: GET session answers the newest messages within MAX_HISTORY_REPLY_BYTES
    and counts the older ones, which `GET .../messages` pages."""
    sid = "fz-rest-history"
    body = json.dumps({"role": "user", "content": "x" * MAX_CONTENT_BYTES}).encode()
    for _ in range(HISTORY_MESSAGES):
        assert http.request("POST", API + sid + "/messages", body).status == 201
    reply = http.request("GET", API + sid)
    judge("GET session of a long history", reply)
    assert reply.status == 200, reply.body[:300]
    session = reply.json()
    shown = len(session["messages"])
    assert shown > 0
    assert shown + session["olderMessages"]["omitted"] == HISTORY_MESSAGES
    read, after, more = 0, 0, True
    while more:
        page = http.request("GET", f"{API}{sid}/messages?after={after}&limit=1000")
        assert page.status == 200, page.body[:300]
        messages = page.json()["messages"]
        read += len(messages)
        more = page.json()["hasMore"]
        after = messages[-1]["seq"] if messages else after
    assert read == HISTORY_MESSAGES


FIXED_GET_ROUTES = ("/api/me", "/healthz", "/metrics")
"""The GET routes without a session: who am I, health, metrics."""


@pytest.mark.parametrize("route", FIXED_GET_ROUTES)
def test_any_query_or_extra_segment_on_the_fixed_get_routes_is_never_a_5xx(
    route, fuzz_stack, http, ledger
):
    """Attacks the routes without a session id: any query, and any segment appended to the
    path (which must be a JSON 404, not a 5xx or another route)."""

    @fuzz(20)
    @given(extra=mostly(st.just(""), segments()), query=queries())
    def run(extra: str, query: str) -> None:
        target = route + (f"/{extra}" if extra else "") + (f"?{query}" if query else "")
        send(http, ledger, fuzz_stack, f"GET {route}", "GET", target, set())

    run()


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

    @fuzz(4)
    @example(size=MAX_LINE + 1)
    @given(size=st.integers(MAX_LINE + 1, 4 * MAX_LINE))
    def run(size: int) -> None:
        method, target, headers = OVER_LONG[where](size)
        reply = http.request(method, target, None, headers)
        record(f"rest over-long {where}", str(reply.status))
        assert reply.status == 400, reply

    run()
