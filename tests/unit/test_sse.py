"""ai_service/sse.py: events from raw bytes however the network splits them, and chunk fields."""

from __future__ import annotations

import json

import pytest

from ai_service.sse import DONE, ChunkFields, MalformedChunk, SseDecoder

STREAM = (
    b'data: {"model": "m", "choices": [{"index": 0, "delta": {"content": "tok0"}}]}\n\n'
    b": a comment\n\n"
    b'event: message\r\ndata: {"choices": [{"index": 0, "delta": {"content": " tok1"},'
    b' "finish_reason": "stop"}]}\r\n\r\n'
    b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
    b"data: [DONE]\n\n"
)


def decode(pieces: list[bytes]) -> list[bytes]:
    decoder = SseDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(STREAM)], ids=lambda n: f"pieces-of-{n}")
def test_events_are_the_same_however_the_bytes_are_split(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]

    events = decode(pieces)

    assert len(events) == 4
    assert events[-1] == DONE
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == " tok1"


def test_data_lines_of_one_event_are_joined_with_newlines() -> None:
    assert decode([b"data: a\ndata:b\n\n"]) == [b"a\nb"]


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data: x\n") == []
    assert decoder.feed(b"\n") == [b"x"]


def test_chunk_fields_read_text_finish_usage_and_model() -> None:
    events = decode([STREAM])

    first, second, usage = (ChunkFields.of(e) for e in events[:3])

    assert (first.text, first.finish_reason, first.model) == ("tok0", None, "m")
    assert (second.text, second.finish_reason) == (" tok1", "stop")
    assert usage.usage == (3, 2)
    assert usage.text == ""


def test_an_error_object_in_the_stream_is_reported_with_its_message() -> None:
    fields = ChunkFields.of(b'{"error": {"message": "overloaded"}}')

    assert fields.error == "overloaded"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"choices": {"index": 0}}', id="choices-not-a-list"),
        pytest.param(b'{"choices": [{"index": 0, "delta": {"content": 5}}]}', id="content-number"),
        pytest.param(b'{"usage": {"prompt_tokens": "3"}}', id="usage-not-integers"),
    ],
)
def test_anything_not_shaped_like_a_chunk_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedChunk):
        ChunkFields.of(data)
