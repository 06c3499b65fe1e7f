"""Answer batching: order kept, no chunk split, batches grow while the consumer is busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from session_service.actor.answer_batches import batches


async def source(items: list[tuple[str, int]]):
    for item in items:
        yield item


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [b async for b in stream]


async def test_chunks_waiting_while_the_consumer_is_busy_become_one_batch():
    items = [(f"t{i} ", 1) for i in range(10)]
    out = []
    async for batch in batches(source(items), max_chunks=100):
        out.append(batch)
        await asyncio.sleep(0)  # the consumer stores the batch; the source keeps producing
    assert "".join(out) == "".join(t for t, _ in items)
    assert len(out) < len(items)


async def test_a_batch_never_exceeds_max_chunks():
    items = [("x", 1)] * 100
    out = await collect(batches(source(items), max_chunks=7))
    assert "".join(out) == "x" * 100
    assert max(len(b) for b in out) <= 7


async def test_the_sources_error_comes_after_the_text_before_it():
    async def failing():
        yield "a", 1
        raise RuntimeError("model cut the stream")

    out = []
    with pytest.raises(RuntimeError, match="cut"):
        async for batch in batches(failing(), max_chunks=4):
            out.append(batch)
    assert out == ["a"]


async def test_closing_the_batches_cancels_the_source():
    cancelled = asyncio.Event()

    async def endless():
        try:
            while True:
                yield "y", 1
                await asyncio.sleep(0.001)
        finally:
            cancelled.set()

    stream = batches(endless(), max_chunks=4)
    await anext(stream)
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_a_slow_source_is_batched_by_time_but_the_first_batch_leaves_at_once():
    async def slow():
        for i in range(12):
            yield f"t{i} ", 1
            await asyncio.sleep(0.005)

    out = []
    async for batch in batches(slow(), max_chunks=100, linger_s=0.03):
        out.append(batch)
    assert "".join(out) == "".join(f"t{i} " for i in range(12))
    assert out[0] == "t0 "  # nothing waited for the first token
    assert len(out) < 12 and max(b.count(" ") for b in out) > 1


async def test_the_end_of_the_answer_is_not_held_back_by_the_linger():
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await collect(batches(source([("a", 1), ("b", 1)]), max_chunks=10, linger_s=30))
    assert "".join(out) == "ab"
    assert loop.time() - started < 5  # far below the 30 s linger
