"""One fan-out stream's queue (gateway/feeds.py FeedStream): the replay is owed whole, live events
are bounded, a stream over the bound is cut at once, a close comes after what was queued."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import UpstreamError
from gateway.feeds import FeedStream


async def test_the_replay_is_owed_whole_even_past_the_bound() -> None:
    stream = FeedStream([b"r1", b"r2", b"r3"], queue=2)
    stream.push(b"l1")
    stream.push(b"l2")
    assert [await stream.next() for _ in range(5)] == [b"r1", b"r2", b"r3", b"l1", b"l2"]


async def test_a_stream_over_the_bound_is_cut_at_once() -> None:
    stream = FeedStream([b"r1"], queue=2)
    for data in (b"l1", b"l2", b"l3"):
        stream.push(data)
    with pytest.raises(UpstreamError) as cut:
        await stream.next()
    assert grpc.StatusCode[cut.value.code] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "resubscribe from your cursor" in cut.value.message


async def test_a_close_comes_after_what_was_queued() -> None:
    stream = FeedStream([], queue=4)
    stream.push(b"access changed")
    stream.close(UpstreamError("no access", status=404, code="NOT_FOUND", retryable=False))
    stream.push(b"after the close")
    assert await stream.next() == b"access changed"
    with pytest.raises(UpstreamError) as gone:
        await stream.next()
    assert gone.value.code == "NOT_FOUND"
