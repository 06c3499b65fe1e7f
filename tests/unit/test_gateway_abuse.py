"""Which address a request is counted against (gateway/abuse.py client_ip)."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.abuse import client_ip, parse_networks


def request(peer: str, forwarded: str = "") -> object:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = mock.Mock()
    transport.get_extra_info.return_value = (peer, 4000)
    return make_mocked_request("GET", "/api/chat/session/x", headers=headers, transport=transport)


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks("127.0.0.1, 10.1.0.0/16")
    spoofed = request("192.0.2.7", "10.0.0.1")
    assert client_ip(spoofed, trusted) == "192.0.2.7"  # type: ignore[arg-type]
    via_envoy = request("10.1.2.3", "198.51.100.1, 203.0.113.9")
    assert client_ip(via_envoy, trusted) == "203.0.113.9"  # type: ignore[arg-type]
    assert client_ip(request("127.0.0.1"), trusted) == "127.0.0.1"  # type: ignore[arg-type]
    assert client_ip(via_envoy, ()) == "10.1.2.3"  # type: ignore[arg-type]


def test_malformed_trusted_proxies_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
