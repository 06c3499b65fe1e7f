"""The linger batcher (common/batching.py): coalesces what is waiting (and, with a linger, what
comes soon), never loses order, bounded in batch size and read-ahead, closes its source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import pytest

from common.batching import QUEUED_BATCHES, WideningWindow, batches


async def fast_source(count: int) -> AsyncGenerator[str, None]:
    for index in range(count):
        yield f"<{index}>"


async def test_fast_source_is_coalesced_into_fewer_batches_with_exact_text() -> None:
    got = [batch async for batch in batches(fast_source(1000), max_size=32)]

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
    async for batch in batches(slow_source(), max_size=32):
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
        async for batch in batches(failing_source(), max_size=32):
            got.extend(batch)

    assert got == ["a", "b"]


async def test_empty_source_gives_no_batches() -> None:
    assert [batch async for batch in batches(fast_source(0), max_size=4)] == []


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
        async for _ in batches(source(), max_size=2):
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

    stream = batches(source(), max_size=8)
    assert await anext(stream) == [1] * 8
    await stream.aclose()

    assert closed.is_set()


async def test_max_size_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_size"):
        await anext(batches(fast_source(1), max_size=0))


async def test_with_a_linger_a_slow_source_is_batched_but_its_first_item_is_not_delayed() -> None:
    async def slow_source() -> AsyncGenerator[int, None]:
        for index in range(12):
            yield index
            await asyncio.sleep(0.005)

    got = [batch async for batch in batches(slow_source(), max_size=32, linger_s=0.03)]

    assert [i for batch in got for i in batch] == list(range(12))
    assert got[0] == [0]
    assert len(got) < 12


async def test_a_batch_is_flushed_by_the_linger_while_the_source_stays_open() -> None:
    second = asyncio.Event()

    async def stalling_source() -> AsyncGenerator[int, None]:
        yield 0
        await second.wait()
        yield 1
        await asyncio.Event().wait()  # open, but silent from now on

    stream = batches(stalling_source(), max_size=32, linger_s=0.01)
    assert await anext(stream) == [0]  # the first item is never delayed
    second.set()
    assert await asyncio.wait_for(anext(stream), 5) == [1]  # held at most the linger
    await stream.aclose()


async def test_sizes_bound_a_batch_by_their_sum_and_never_split_an_item() -> None:
    async def sized() -> AsyncGenerator[str, None]:
        for text in ["aaa", "bb", "c", "dddd", "e"]:
            yield text

    got = [batch async for batch in batches(sized(), max_size=4, size=len)]

    assert "".join(t for batch in got for t in batch) == "aaabbcdddde"
    # a batch closes once its size reaches 4: only its last item may take it past 4
    assert all(sum(map(len, batch[:-1])) < 4 for batch in got)


async def test_read_ahead_stops_at_the_bound_while_the_consumer_is_busy() -> None:
    read = 0

    async def endless() -> AsyncGenerator[int, None]:
        nonlocal read
        while True:
            read += 1
            yield read

    stream = batches(endless(), max_size=2)
    first = await anext(stream)
    for _ in range(50):  # the consumer is busy: the producer runs until the queue is full
        await asyncio.sleep(0)
    stalled = read
    for _ in range(50):
        await asyncio.sleep(0)

    assert read == stalled  # the source is not read past the bound
    # what was handed over, the queue's bound, and the item the producer waits to put
    assert read <= len(first) + 2 * QUEUED_BATCHES + 1
    await stream.aclose()


async def test_the_tail_is_flushed_at_the_end_not_held_by_the_linger() -> None:
    loop = asyncio.get_running_loop()

    async def two_then_end() -> AsyncGenerator[int, None]:
        yield 0
        await asyncio.sleep(0.01)  # the second comes after the first batch left
        yield 1

    started = loop.time()
    got = [batch async for batch in batches(two_then_end(), max_size=10, linger_s=30)]

    assert got == [[0], [1]]
    assert loop.time() - started < 5  # far below the 30 s linger


async def test_a_plain_async_iterator_source_is_batched_too() -> None:
    class Countdown:
        def __init__(self) -> None:
            self.left = 3

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> int:
            if not self.left:
                raise StopAsyncIteration
            self.left -= 1
            return self.left

    got = [batch async for batch in batches(Countdown(), max_size=8)]

    assert [i for batch in got for i in batch] == [2, 1, 0]


async def test_a_linger_function_is_asked_once_per_batch() -> None:
    asked: list[int] = []

    def linger() -> float:
        asked.append(1)
        return 0.0

    got = [batch async for batch in batches(fast_source(100), max_size=8, linger_s=linger)]

    assert [item for batch in got for item in batch] == [f"<{i}>" for i in range(100)]
    # One per batch, and perhaps one more for a wait that found only the end.
    assert len(got) <= len(asked) <= len(got) + 1


def test_a_widening_window_follows_the_streams_open_between_floor_and_ceiling() -> None:
    window = WideningWindow(floor_s=0.02, ceiling_s=0.1, per_stream_s=0.001)
    assert window() == 0.02
    with contextlib.ExitStack() as streams:
        for _ in range(50):
            streams.enter_context(window.streaming())
        assert window() == pytest.approx(0.05)
        for _ in range(500):
            streams.enter_context(window.streaming())
        assert window() == 0.1
    assert window.open == 0
    assert window() == 0.02
