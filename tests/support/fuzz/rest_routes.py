"""Every route of the gateway's HTTP API as the REST fuzzer sends it: the path's parameters,
the body's shape, the query parameters it reads, and what a caller's role allows there; plus
the gateway's own route table (built in-process, no server started), so a route added without
an entry here fails test_every_gateway_route_is_fuzzed."""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from hypothesis import strategies as st

from tests.support.fuzz.strategies import hostile_text, json_text, json_values
from tests.support.fuzz.wire import export_files, mostly


@dataclass(frozen=True)
class Route:
    body: str = ""
    """The body's shape (BODIES); "" when the route reads none (any body must not matter)."""
    query: tuple[str, ...] = ()
    """The query parameters the route reads."""
    usual: str = ""
    """The query of a working call, sent when the fuzzer draws none."""
    claims: bool = False
    """A write that may claim a session nobody used (verdict.CLAIMING)."""
    kind: str = "read"
    """read (stores nothing even when it succeeds), write (a viewer may not), manage (only the
    owner), own (the caller's own things: flags, read marks, uploads, forks), public (no
    token needed: health, metrics, page, who am I, dev login)."""


SESSION = "/api/chat/session/{session_id}"
THREAD = "/api/threads/{session_id}"
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/me"): Route(kind="public"),
    ("POST", "/api/login"): Route(body="login", kind="public"),
    ("POST", "/api/logout"): Route(kind="public"),
    ("GET", "/healthz"): Route(kind="public"),
    ("GET", "/metrics"): Route(kind="public"),
    ("GET", "/"): Route(kind="public"),
    ("GET", "/app.js"): Route(kind="public"),
    ("GET", "/app.css"): Route(kind="public"),
    ("GET", SESSION): Route(),
    ("PUT", SESSION): Route(body="patch", query=("expectedVersion",), claims=True, kind="write"),
    ("GET", SESSION + "/messages"): Route(query=("after", "limit", "branch", "allBranches")),
    ("POST", SESSION + "/messages"): Route(body="message", claims=True, kind="write"),
    ("POST", SESSION + "/cancel"): Route(query=("answerSeq",), kind="write"),
    ("POST", SESSION + "/messages/{seq}/feedback"): Route(body="feedback", kind="write"),
    ("GET", SESSION + "/events"): Route(query=("after",)),
    ("GET", "/api/threads"): Route(query=("archived", "limit", "pageToken")),
    ("PATCH", THREAD): Route(body="thread", kind="own"),
    ("POST", THREAD + "/read"): Route(kind="own"),
    ("DELETE", THREAD): Route(kind="manage"),
    ("POST", THREAD + "/restore"): Route(kind="manage"),
    ("GET", THREAD + "/export"): Route(query=("pageToken",)),
    ("POST", "/api/threads/import"): Route(
        body="import", query=("sessionId",), claims=True, kind="own"
    ),
    ("POST", SESSION + "/messages/{seq}/edit"): Route(body="edit", kind="write"),
    ("POST", SESSION + "/messages/{seq}/regenerate"): Route(kind="write"),
    ("POST", SESSION + "/branch"): Route(body="branch", kind="write"),
    ("POST", THREAD + "/fork"): Route(body="fork", kind="own"),
    ("GET", "/api/search"): Route(query=("q", "thread", "limit", "pageToken"), usual="q=hello"),
    ("POST", "/api/attachments"): Route(
        body="bytes", query=("filename",), usual="filename=a.txt", kind="own"
    ),
    ("GET", SESSION + "/attachments/{sha256}"): Route(),
    ("GET", "/ws/{thread_id}"): Route(query=("user",)),
}
"""Every route but HEAD, which the fuzzer sends to every GET route."""

ROLES = ("owner", "member", "viewer", "outsider") * 2 + ("anonymous", "expired", "forged")


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def _shaped(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[bytes]:
    """A JSON object with the route's fields, each value mostly of its type and now and then
    any JSON or hostile text; optional fields maybe missing; now and then a stray field."""
    hostile_values = st.one_of(json_values(), hostile_text())
    shaped = st.fixed_dictionaries(
        {k: mostly(v, hostile_values) for k, v in required.items()},
        optional={k: mostly(v, hostile_values) for k, v in optional.items()},
    )
    stray = st.tuples(shaped, json_values()).map(lambda t: {**t[0], "extra": t[1]})
    return mostly(shaped, stray).map(_dumps)


TEXT = mostly(st.text(min_size=1, max_size=40), hostile_text())
SEQS = mostly(st.integers(1, 8), st.integers(-1, 2**64))
BODIES: dict[str, st.SearchStrategy[bytes]] = {
    "patch": st.dictionaries(
        mostly(hostile_text(16), st.sampled_from(["messages", "createdAt", "lastAccessedAt"])),
        json_values(),
        max_size=5,
    ).map(_dumps),
    "message": _shaped(
        {"role": st.sampled_from(["user", "user", "assistant", "system"]), "content": TEXT},
        {
            "user": hostile_text(200),
            "clientMessageId": hostile_text(200),
            "replyTo": SEQS,
            "attachments": st.lists(st.fixed_dictionaries({"sha256": hostile_text(70)})),
        },
    ),
    "feedback": _shaped(
        {"rating": st.sampled_from(["up", "down", None])},
        {"comment": TEXT, "user": hostile_text()},
    ),
    "thread": _shaped({}, {"title": TEXT, "pinned": st.booleans(), "archived": st.booleans()}),
    "import": export_files().map(lambda text: text.encode("utf-8", "surrogatepass")),
    "edit": _shaped({"content": TEXT}, {}),
    "branch": _shaped({"messageSeq": SEQS}, {}),
    "fork": _shaped({"atSeq": SEQS}, {"sessionId": hostile_text(140)}),
    "login": _shaped({"user": TEXT}, {}),
    "bytes": st.binary(max_size=512),
}


def bodies(shape: str) -> st.SearchStrategy[bytes | None]:
    """Mostly the route's shape; else no body, any bytes, any JSON value or JSON-ish text."""
    anything = st.one_of(
        st.none(),
        st.binary(max_size=512),
        json_text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    )
    return mostly(BODIES[shape], anything) if shape else mostly(st.none(), anything)


def gateway_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the gateway's app serves, with the dev login on."""
    return asyncio.run(_routes())


async def _routes() -> set[tuple[str, str]]:
    from gateway.app import create_app
    from gateway.config import Config
    from gateway.hub import Hubs
    from gateway.metrics import GatewayMetrics
    from gateway.upstream import SessionClient
    from gateway.ws import SocketRoutes

    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "secret"
        secret.write_bytes(b"x" * 32)
        environ = {
            "SESSION_SERVICE_ADDR": "127.0.0.1:1",
            "AUTH_SECRET_FILE": str(secret),
            "CLUSTER_SECRET_FILE": str(secret),
            "AUTH_DEV_LOGIN": "true",
        }
        cfg = Config.from_env(environ)
    channel = grpc.aio.insecure_channel(cfg.session_service_addr)
    try:
        client = SessionClient(channel, 1.0)
        async with asyncio.TaskGroup() as tasks:
            metrics = GatewayMetrics()
            sockets = SocketRoutes(cfg, client, Hubs(client, tasks, 1.0), metrics)
            app = create_app(cfg, client, sockets, metrics)
    finally:
        await channel.close()
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
