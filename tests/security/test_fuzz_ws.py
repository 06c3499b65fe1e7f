"""Fuzzing the seed WebSocket `/ws/{thread}?user=` over a real socket with access control on
(AUTH_MODE=jwt; the token travels as the `bearer.<token>` subprotocol, as browsers send it):
any text frame (commands, control-frame lookalikes, backslashes, size limits), binary frames,
frames over the size limit, text that is not UTF-8, a viewer's frames, and any caller, thread
id or user in the handshake. The gateway answers each as gateway/ws.py and gateway/frames.py
document, stores a prompt as the sender's text (one leading backslash dropped), no socket ever
sees a control frame the protocol did not send it, and whatever is refused stores nothing: the
Redis keys (SCAN + DUMP) and attachment files before and after are equal (verdict.py).

Replaying a failure: tests/security/fuzz-examples/ (README.md there), as test_fuzz_grpc.py."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from durablechat.v1 import common_pb2, session_pb2, session_pb2_grpc
from tests.support.fuzz.cast import Caller, Room
from tests.support.fuzz.outcomes import record
from tests.support.fuzz.strategies import CONTROL_LOOKALIKES, fuzz, hostile_text
from tests.support.fuzz.verdict import Witness
from tests.support.fuzz.wire import mostly
from tests.support.secure import SecureStack

pytestmark = pytest.mark.slow

LOADING, DONE, ERROR_PREFIX, ESCAPE = "[LOADING]", "[DONE]", "[ERROR] ", "\\"
GET_HISTORY, CANCEL = "(GET_HISTORY)", "(CANCEL)"
MAX_FRAME_BYTES = 1024 * 1024
"""The gateway's default WS_MAX_MESSAGE_BYTES: a larger frame closes the socket with 1009."""
MAX_CONTENT_BYTES = 65_536
"""The session service's default MAX_CONTENT_BYTES: a longer prompt is an `[ERROR]` frame."""
MESSAGE_TOO_BIG, INVALID_PAYLOAD = 1009, 1007
"""RFC 6455 close codes: a frame over the limit, and a text frame that is not UTF-8."""
FRAME_TIMEOUT_S = 15.0
HANDSHAKE_LONGEST = 129
"""Longest generated thread id or user: past the 128-character limits, under the request line's."""
SENDER, OBSERVER = "member", "owner"
"""The room's member sends; its owner watches."""
ROLES = ("owner", "member", "viewer", "outsider") * 2 + ("anonymous", "expired", "forged")


def ws_url(secure: SecureStack, thread: str, user: str = "") -> str:
    base = secure.stack.gateway_url.replace("http://", "ws://")
    return f"{base}/ws/{thread}?user={urllib.parse.quote(user, safe='')}"


def protocols(caller: Caller) -> list[Subprotocol]:
    return [Subprotocol(p) for p in caller.subprotocols()]


def open_socket(secure: SecureStack, thread: str, caller: Caller) -> ClientConnection:
    return connect(
        ws_url(secure, thread),
        max_size=None,
        open_timeout=FRAME_TIMEOUT_S,
        subprotocols=protocols(caller),
    )


def receive(ws: ClientConnection) -> str | bytes:
    return ws.recv(timeout=FRAME_TIMEOUT_S)


class Barrier:
    """Proves a socket got nothing more: a blank prompt is answered with one error frame to
    its sender only, so anything that arrives before that answer is a stray frame."""

    def __init__(self, probe: ClientConnection) -> None:
        probe.send(" ")
        self.reply = receive(probe)
        assert isinstance(self.reply, str) and self.reply.startswith(ERROR_PREFIX), self.reply

    def cross(self, ws: ClientConnection) -> None:
        ws.send(" ")
        frame = receive(ws)
        assert frame == self.reply, f"a frame the protocol did not send: {frame!r}"


def answer_text(ws: ClientConnection) -> str:
    """Reads one answer block as a client must: `[LOADING]`, text frames (one leading backslash
    dropped), `[DONE]`. Any other control frame in between fails."""
    first = receive(ws)
    assert first == LOADING, f"expected {LOADING}, got {first!r}"
    texts: list[str] = []
    while (frame := receive(ws)) != DONE:
        assert isinstance(frame, str), f"a binary frame: {frame!r}"
        assert frame != LOADING and not frame.startswith(ERROR_PREFIX), f"bare control {frame!r}"
        texts.append(frame[1:] if frame.startswith(ESCAPE) else frame)
    return "".join(texts)


def prompt_of(frame: str) -> str:
    """The prompt a text frame that is not a command sends (gateway/frames.py)."""
    return frame[1:] if frame.startswith(ESCAPE) else frame


def refused(prompt: str) -> bool:
    """What the session service refuses as a prompt: blank, or over the content limit."""
    return not prompt.strip() or len(prompt.encode("utf-8")) > MAX_CONTENT_BYTES


@pytest.fixture
def pair(
    fuzz_stack: SecureStack, cast: dict[str, Caller], room: Room
) -> Iterator[tuple[ClientConnection, ClientConnection, Barrier]]:
    """The attacker's socket and a bystander's on the room, and the barrier between frames."""
    with (
        open_socket(fuzz_stack, room.session_id, cast[SENDER]) as sender,
        open_socket(fuzz_stack, room.session_id, cast[OBSERVER]) as observer,
    ):
        yield sender, observer, Barrier(sender)


@pytest.fixture
def history(channel: Any, cast: dict[str, Caller], room: Room) -> Any:
    """The room's messages after a seq, as its owner reads them."""
    stub = session_pb2_grpc.SessionServiceStub(channel)

    def after(seq: int) -> tuple[list[common_pb2.Message], int]:
        page = stub.ListMessages(
            session_pb2.ListMessagesRequest(session_id=room.session_id, after_seq=seq, limit=10),
            metadata=cast["owner"].metadata(),
            timeout=10,
        )
        return list(page.messages), page.last_seq

    return after


def text_frames() -> st.SearchStrategy[str]:
    """Commands, control-frame lookalikes behind backslashes, and any hostile text."""
    lookalike = st.tuples(
        st.text(alphabet=ESCAPE, max_size=3),
        st.sampled_from(CONTROL_LOOKALIKES),
        st.one_of(st.just(""), hostile_text(8)),
    ).map("".join)
    return mostly(hostile_text(), lookalike)


def test_text_frames_are_answered_as_documented_and_never_leak_a_control_frame(
    fuzz_stack, witness: Witness, history, cast, pair
):
    """Attacks the frame protocol: a prompt that is a control frame (`[DONE]`, `[LOADING]`,
    `[ERROR] x`), a command, either behind any number of backslashes, blank text, text at the
    64 KiB limit. The model echoes the prompt, so the attacker controls the answer text too.
    Commands answer the sender only; a prompt is stored as its text less one leading
    backslash, as the sender's, and answered to both sockets as escaped text; a refused one
    stores nothing."""
    sender, observer, barrier = pair
    _, cursor = history(0)

    @fuzz(100, "ws-text-frames")
    @example(frame="[DONE]")
    @example(frame="\\(GET_HISTORY)")
    @example(frame="[ERROR] injected")
    @given(frame=text_frames())
    def run(frame: str) -> None:
        nonlocal cursor
        witness.before()
        sender.send(frame)
        if frame == GET_HISTORY:
            outcome = "history"
            entries = json.loads(receive(sender))
            assert isinstance(entries, list)
            assert all(set(e) == {"role", "content", "user", "ts"} for e in entries)
        elif frame == CANCEL or refused(prompt_of(frame)):
            outcome = "error frame"
            reply = receive(sender)
            assert isinstance(reply, str) and reply.startswith(ERROR_PREFIX), reply
        else:
            outcome = "answer"
            prompt = prompt_of(frame)
            assert answer_text(sender) == prompt
            assert answer_text(observer) == prompt
            messages, cursor = history(cursor)
            assert [(m.role, m.content, m.user) for m in messages] == [
                (common_pb2.ROLE_USER, prompt, cast[SENDER].user),
                (common_pb2.ROLE_ASSISTANT, prompt, ""),
            ]
        record("ws text frame", outcome)
        barrier.cross(sender)
        barrier.cross(observer)
        witness.after(f"text frame {frame[:80]!r}", stores_nothing=outcome != "answer")

    run()
    assert_gateway_serves(fuzz_stack, cast)


def test_a_viewers_frames_are_refused_and_store_nothing(fuzz_stack, witness: Witness, cast, room):
    """Attacks the roles over the socket: a viewer's socket may read the room but every frame
    that would write (prompts, lookalikes, `(CANCEL)`) gets one `[ERROR]` frame and stores
    nothing; `(GET_HISTORY)` is a read and answers."""
    with open_socket(fuzz_stack, room.session_id, cast["viewer"]) as viewer:

        @fuzz(40, "ws-viewer-frames")
        @example(frame="hello")
        @example(frame=CANCEL)
        @given(frame=text_frames())
        def run(frame: str) -> None:
            witness.before()
            viewer.send(frame)
            reply = receive(viewer)
            if frame == GET_HISTORY:
                assert isinstance(json.loads(reply), list)
            else:
                assert isinstance(reply, str) and reply.startswith(ERROR_PREFIX), reply
            record("ws viewer frame", "history" if frame == GET_HISTORY else "error frame")
            witness.after(f"viewer frame {frame[:80]!r}", stores_nothing=True)

        run()


def test_binary_frames_get_an_error_frame_and_store_nothing(
    witness: Witness, fuzz_stack, cast, pair
):
    """Attacks frame types: any binary frame (empty, a prompt's bytes, a command's bytes) is
    answered with one `[ERROR]` frame to the sender (gateway/ws.py) and stores nothing."""
    sender, observer, barrier = pair

    @fuzz(30, "ws-binary-frames")
    @example(data=b"(GET_HISTORY)")
    @given(data=st.one_of(st.binary(max_size=2048), text_frames().map(str.encode)))
    def run(data: bytes) -> None:
        witness.before()
        sender.send(data)
        reply = receive(sender)
        record("ws binary frame", "error frame" if str(reply).startswith(ERROR_PREFIX) else "?")
        assert isinstance(reply, str) and reply.startswith(ERROR_PREFIX), reply
        barrier.cross(sender)
        barrier.cross(observer)
        witness.after("a binary frame", stores_nothing=True)

    run()
    assert_gateway_serves(fuzz_stack, cast)


def close_code(ws: ClientConnection) -> int | None:
    """The code the server closed with, once the socket is closed."""
    try:
        while True:
            receive(ws)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_frames_over_the_size_limit_close_1009_and_store_nothing(
    kind, fuzz_stack, witness: Witness, cast, room
):
    """Attacks the frame size limit (1 MiB): a frame one byte over it, or more, closes the
    socket with 1009 (gateway/config.py) and stores nothing; one at the limit is a prompt over
    the 64 KiB content limit, so an `[ERROR]` frame. A fresh socket works afterwards."""

    @fuzz(5, f"ws-over-size-{kind}")
    @example(size=MAX_FRAME_BYTES + 1, filler="x")
    @example(size=MAX_FRAME_BYTES, filler="x")
    @given(
        size=st.integers(MAX_FRAME_BYTES - 4, MAX_FRAME_BYTES + 65_536),
        filler=st.sampled_from(["x", "é", "😀", "\\", "["]),
    )
    def run(size: int, filler: str) -> None:
        data = (filler * size).encode()[:size]
        assume(kind == "binary" or _utf8(data))
        witness.before()
        with open_socket(fuzz_stack, room.session_id, cast[SENDER]) as ws:
            ws.send(data if kind == "binary" else data.decode())
            if size > MAX_FRAME_BYTES:
                code = close_code(ws)
                record(f"ws {kind} frame over 1 MiB", f"close {code}")
                assert code == MESSAGE_TOO_BIG
            else:
                reply = receive(ws)
                record(f"ws {kind} frame at 1 MiB", "error frame")
                assert isinstance(reply, str) and reply.startswith(ERROR_PREFIX), reply
        witness.after(f"a {kind} frame of {size} bytes", stores_nothing=True)
        assert_gateway_serves(fuzz_stack, cast)

    run()


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_text_frames_that_are_not_utf8_close_1007_and_store_nothing(
    fuzz_stack, witness: Witness, cast, room
):
    """Attacks text decoding: a text frame whose payload is not UTF-8 (lone surrogates, cut
    sequences, overlongs) closes the socket with 1007 (RFC 6455) and stores nothing."""

    @fuzz(15, "ws-not-utf8")
    @example(data=b"\xed\xa0\x80")  # a UTF-8-encoded lone surrogate
    @given(data=st.binary(min_size=1, max_size=64))
    def run(data: bytes) -> None:
        assume(not _utf8(data))
        witness.before()
        with open_socket(fuzz_stack, room.session_id, cast[SENDER]) as ws:
            ws.send(data, text=True)
            code = close_code(ws)
        record("ws non-UTF-8 text frame", f"close {code}")
        assert code == INVALID_PAYLOAD
        witness.after("a text frame that is not UTF-8", stores_nothing=True)

    run()
    assert_gateway_serves(fuzz_stack, cast)


def test_any_caller_thread_id_and_user_is_upgraded_or_refused_with_a_json_4xx(
    fuzz_stack, witness: Witness, cast, room
):
    """Attacks the handshake as every caller: any thread id (the room, the caller's own,
    encoded slashes, dots, 129+ characters, non-ASCII) and any `user` (over 128 characters,
    control characters; a token's user wins) is either a working socket or an HTTP 4xx with
    the JSON error body, never a 5xx. Callers with no identity and outsiders of the room are
    refused; a refused handshake stores nothing. (Request lines over aiohttp's 8190 bytes are
    test_fuzz_rest.py's.)"""

    @fuzz(40, "ws-handshake")
    @example(role="outsider", thread=room.session_id, user="ann")
    @example(role="anonymous", thread=room.session_id, user="ann")
    @example(role="member", thread="x" * 129, user="")
    @given(
        role=st.sampled_from(ROLES),
        thread=mostly(
            st.sampled_from([room.session_id, "fz-ws-handshake"]),
            hostile_text(140, longest=HANDSHAKE_LONGEST),
        ),
        user=mostly(st.just(""), hostile_text(140, longest=HANDSHAKE_LONGEST)),
    )
    def run(role: str, thread: str, user: str) -> None:
        caller = cast[role]
        url = ws_url(fuzz_stack, urllib.parse.quote(thread, safe=""), user)
        witness.before()
        try:
            with connect(
                url,
                max_size=None,
                open_timeout=FRAME_TIMEOUT_S,
                subprotocols=protocols(caller),
            ) as ws:
                ws.send(GET_HISTORY)
                assert isinstance(json.loads(receive(ws)), list)
            status = 101
        except InvalidStatus as refused_:
            status = refused_.response.status_code
            assert 400 <= status < 500, f"handshake answered {status}"
            body = json.loads(refused_.response.body or b"null")
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        record("ws handshake", str(status))
        if not caller.identified or (role == "outsider" and thread == room.session_id):
            assert status != 101, f"{role} opened a socket on {thread[:80]!r}"
        witness.after(f"a handshake as {role}", stores_nothing=status != 101, claiming=True)

    run()
    assert_gateway_serves(fuzz_stack, cast)


def assert_gateway_serves(secure: SecureStack, cast: dict[str, Caller]) -> None:
    """The gateway is up and a fresh socket works."""
    gateway = secure.stack.gateway
    assert gateway is not None and gateway.alive(), "the gateway died"
    with open_socket(secure, "fz-ws-fresh", cast["owner"]) as ws:
        ws.send(GET_HISTORY)
        assert isinstance(json.loads(receive(ws)), list)
