"""A blocking HTTP/1.1 client that sends paths, queries and bodies as given, and never reads an
event stream's endless body."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        """The body as strict JSON (NaN and Infinity are not JSON)."""
        return json.loads(self.body, parse_constant=_not_json)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class RawHttp:
    """One keep-alive connection, reopened when the server closed it."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._host, self._port = host, int(port)
        self._conn = self._open()

    def _open(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT_S)

    def close(self) -> None:
        self._conn.close()

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        for attempt in (1, 2):
            try:
                return self._send(method, target, body, headers or {})
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = self._open()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        self._conn.request(method, target, body=body, headers=headers)
        response = self._conn.getresponse()
        content_type = response.getheader("Content-Type") or ""
        if content_type.startswith("text/event-stream"):
            self._conn.close()  # the stream never ends; its start is all we judge
            self._conn = self._open()
            return Reply(response.status, content_type, b"")
        return Reply(response.status, content_type, response.read())
