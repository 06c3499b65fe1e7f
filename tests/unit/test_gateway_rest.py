"""REST input parsing: bodies and query parameters are checked before any call upstream."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest
from gateway.rest import NewMessage, parse_new_message, parse_patch, parse_uint


def test_patch_is_the_body_object_with_nulls_kept():
    assert parse_patch(b'{"a": {"b": null}, "c": [1]}') == {"a": {"b": None}, "c": [1]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"{not json", "not valid JSON", id="invalid-json"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b'{"a": NaN}', "not valid JSON", id="nan"),
        pytest.param(b'{"a": "\\ud800"}', "not valid JSON", id="lone-surrogate"),
        pytest.param(b"[1, 2]", "JSON object", id="list"),
        pytest.param(b'"text"', "JSON object", id="string"),
        pytest.param(b"null", "JSON object", id="null"),
        pytest.param(b'{"messages": []}', "'messages'", id="reserved-messages"),
        pytest.param(b'{"createdAt": 1}', "'createdAt'", id="reserved-created-at"),
        pytest.param(b'{"lastAccessedAt": 1}', "'lastAccessedAt'", id="reserved-last-accessed"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "not valid JSON", id="too-deep"),
    ],
)
def test_bad_patch_is_rejected_naming_the_problem(body: bytes, fragment: str):
    with pytest.raises(BadRequest) as caught:
        parse_patch(body)
    assert fragment in caught.value.message


def test_new_message_with_all_fields():
    body = b'{"role": "assistant", "content": "hi", "user": "ann", "clientMessageId": "c1"}'
    assert parse_new_message(body) == NewMessage("assistant", "hi", "ann", "c1")


def test_new_message_optional_fields_default_to_empty():
    assert parse_new_message(b'{"role": "user", "content": "hi", "user": null}') == NewMessage(
        "user", "hi", "", ""
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b'{"role": "robot", "content": "x"}', "role", id="bad-role"),
        pytest.param(b'{"content": "x"}', "role", id="no-role"),
        pytest.param(b'{"role": "user"}', "content", id="no-content"),
        pytest.param(b'{"role": "user", "content": 5}', "content", id="content-not-string"),
        pytest.param(b'{"role": "user", "content": "x", "user": 5}', "user", id="user-number"),
        pytest.param(b'{"role": "user", "content": "x", "extra": 1}', "'extra'", id="unknown-key"),
        pytest.param(b'["user", "x"]', "JSON object", id="list"),
    ],
)
def test_bad_new_message_is_rejected_naming_the_field(body: bytes, fragment: str):
    with pytest.raises(BadRequest) as caught:
        parse_new_message(body)
    assert fragment in caught.value.message


def test_uint_query_parameter_defaults_and_parses():
    assert parse_uint({}, "after", 0, 10) == 0
    assert parse_uint({"after": "7"}, "after", 0, 10) == 7


@pytest.mark.parametrize("raw", ["-1", "1.5", "x", "", " 1", "+1", "1_0", "\uff11", "11"])
def test_bad_uint_query_parameter_is_rejected(raw: str):
    with pytest.raises(BadRequest) as caught:
        parse_uint({"limit": raw}, "limit", 0, 10)
    assert "limit" in caught.value.message
