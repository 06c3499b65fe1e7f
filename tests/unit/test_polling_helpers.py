"""The polling helpers leave nothing for the garbage collector: an object they drop late (an
HTTP error's open socket) warns in whichever test runs then, and under our filterwarnings that
warning is an error in a test that did nothing wrong (it failed a CI run once)."""

from __future__ import annotations

import gc
import http.server
import threading
import warnings
import weakref
from collections.abc import Iterator

import pytest

from deploy.stack.waits import async_eventually, eventually, http_get


class Unready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"not yet\n"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unready_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ready"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_error_status_is_returned_with_its_body_and_its_socket_closed(unready_url: str) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert http_get(unready_url) == (503, b"not yet\n")
        gc.collect()
    assert [str(w.message) for w in seen] == []


class Refused(Exception):
    pass


def test_the_last_error_of_eventually_is_freed_when_it_returns() -> None:
    raised: list[weakref.ref[Refused]] = []

    def new_error() -> Refused:
        error = Refused("not yet")
        raised.append(weakref.ref(error))
        return error

    def ready_the_second_time() -> bool:
        if raised:
            return True
        raise new_error()  # no local of this frame (in the traceback) holds the error

    gc.disable()
    try:
        assert eventually(ready_the_second_time, timeout=5, interval=0)
        assert raised[0]() is None, "the error outlived the call: only the collector frees it"
    finally:
        gc.enable()


async def test_the_last_error_of_async_eventually_is_freed_when_it_returns() -> None:
    raised: list[weakref.ref[Refused]] = []

    def new_error() -> Refused:
        error = Refused("not yet")
        raised.append(weakref.ref(error))
        return error

    async def ready_the_second_time() -> bool:
        if raised:
            return True
        raise new_error()

    gc.disable()
    try:
        assert await async_eventually(ready_the_second_time, within=5, interval=0)
        assert raised[0]() is None, "the error outlived the call: only the collector frees it"
    finally:
        gc.enable()
