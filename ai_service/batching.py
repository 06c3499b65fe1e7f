"""Opportunistic batching of an async stream: order kept, items never split, no added latency;
a source error is re-raised to the consumer, and closing the consumer closes the source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

QUEUED_BATCHES = 4
"""Read-ahead, in batches: past it the producer waits, so a slow reader slows the source."""


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    error: Exception


class _End:
    pass


_END = _End()

_Entry = _Item[T] | _Failed | _End


async def batches(source: AsyncGenerator[T, None], max_items: int) -> AsyncGenerator[list[T], None]:
    """Yields lists of consecutive source items, each of 1..max_items.

    A producer task reads `source` into a bounded queue. The consumer waits for one item, then
    takes every item already waiting (up to `max_items`): a slow source gives one item per batch
    with no delay, a fast one is coalesced. Items before a source error are yielded first, then
    the error itself is raised. Closing this generator early (`aclose()`, or cancellation of
    the task iterating it) cancels the producer and closes `source`, so an upstream request is
    aborted with it; iterate it under `contextlib.aclosing` so a `break` or an error in the loop
    body closes it too.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    queue: asyncio.Queue[_Entry[T]] = asyncio.Queue(maxsize=max_items * QUEUED_BATCHES)
    producer = asyncio.create_task(_produce(source, queue))
    try:
        while True:
            entries = [await queue.get()]
            while len(entries) < max_items and not queue.empty():
                entries.append(queue.get_nowait())
            batch: list[T] = []
            for entry in entries:
                if isinstance(entry, _Item):
                    batch.append(entry.value)
                    continue
                if batch:
                    yield batch
                if isinstance(entry, _Failed):
                    raise entry.error
                return
            yield batch
    finally:
        producer.cancel()
        # asyncio.wait neither raises the producer's CancelledError nor swallows our own.
        await asyncio.wait([producer])


async def _produce(source: AsyncGenerator[T, None], queue: asyncio.Queue[_Entry[T]]) -> None:
    """Copies `source` into `queue`, then an end or failure marker; always closes `source`."""
    async with contextlib.aclosing(source):
        try:
            async for value in source:
                await queue.put(_Item(value))
        except Exception as exc:
            await queue.put(_Failed(exc))
        else:
            await queue.put(_END)
