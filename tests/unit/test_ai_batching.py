"""Batching: coalesces what is waiting (and, with a linger, what comes soon), never loses order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from ai_service.batching import batches


async def fast_source(count: int) -> AsyncGenerator[str, None]:
    for index in range(count):
        yield f"<{index}>"


async def test_fast_source_is_coalesced_into_fewer_batches_with_exact_text() -> None:
    got = [batch async for batch in batches(fast_source(1000), max_items=32)]

    assert "".join("".join(batch) for batch in got) == "".join(f"<{i}>" for i in range(1000))
    assert len(got) < 1000
    assert all(1 <= len(batch) <= 32 for batch in got)


async def test_slow_source_gives_one_item_per_batch() -> None:
    permits: asyncio.Queue[None] = asyncio.Queue()

    async def slow_source() -> AsyncGenerator[int, None]:
        for index in range(5):
            await permits.get()  # the next item exists only once the last batch was seen
            yield index

    got = []
    await permits.put(None)
    async for batch in batches(slow_source(), max_items=32):
        got.append(batch)
        await permits.put(None)

    assert got == [[0], [1], [2], [3], [4]]


async def test_items_before_a_source_error_arrive_then_the_error_is_raised() -> None:
    async def failing_source() -> AsyncGenerator[str, None]:
        yield "a"
        yield "b"
        raise ConnectionError("model went away")

    got: list[str] = []
    with pytest.raises(ConnectionError, match="model went away"):
        async for batch in batches(failing_source(), max_items=32):
            got.extend(batch)

    assert got == ["a", "b"]


async def test_empty_source_gives_no_batches() -> None:
    assert [batch async for batch in batches(fast_source(0), max_items=4)] == []


@pytest.mark.parametrize(
    "endless",
    [
        pytest.param(False, id="source-waiting-for-upstream"),
        pytest.param(True, id="source-blocked-on-a-full-queue"),
    ],
)
async def test_cancelling_the_consumer_closes_the_source(endless: bool) -> None:
    closed = asyncio.Event()
    first_batch = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            yield 0
            while endless:
                yield 1
            await asyncio.Event().wait()  # an upstream that never sends again
        finally:
            closed.set()

    async def consume() -> None:
        async for _ in batches(source(), max_items=2):
            first_batch.set()

    consumer = asyncio.create_task(consume())
    await first_batch.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert closed.is_set()


async def test_leaving_the_loop_early_closes_the_source() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            while True:
                yield 1
        finally:
            closed.set()

    stream = batches(source(), max_items=8)
    assert await anext(stream) == [1] * 8
    await stream.aclose()

    assert closed.is_set()


async def test_max_items_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_items"):
        await anext(batches(fast_source(1), max_items=0))


async def test_with_a_linger_a_slow_source_is_batched_but_its_first_item_is_not_delayed() -> None:
    async def slow_source() -> AsyncGenerator[int, None]:
        for index in range(12):
            yield index
            await asyncio.sleep(0.005)

    got = [batch async for batch in batches(slow_source(), max_items=32, linger_s=0.03)]

    assert [i for batch in got for i in batch] == list(range(12))
    assert got[0] == [0]
    assert len(got) < 12
