"""Batching of an async stream, bounded by size and by time: order kept, items never split, the
first item never delayed; a source error is re-raised to the consumer, and closing the consumer
closes the source."""

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


async def batches(
    source: AsyncGenerator[T, None], max_items: int, linger_s: float = 0.0
) -> AsyncGenerator[list[T], None]:
    """Yields lists of consecutive source items, each of 1..max_items.

    A producer task reads `source` into a bounded queue. The consumer waits for one item, then
    takes every item already waiting (up to `max_items`) and, after the first batch, what comes
    until `linger_s` after the previous batch was handed over: the first item is never delayed,
    a slow source gives a batch per `linger_s`, a fast one is coalesced up to `max_items`. Items
    before a source error are yielded first, then the error itself is raised; the end of the
    source flushes at once. Closing this generator early (`aclose()`, or cancellation of
    the task iterating it) cancels the producer and closes `source`, so an upstream request is
    aborted with it; iterate it under `contextlib.aclosing` so a `break` or an error in the loop
    body closes it too.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    queue: asyncio.Queue[_Entry[T]] = asyncio.Queue(maxsize=max_items * QUEUED_BATCHES)
    producer = asyncio.create_task(_produce(source, queue))
    loop = asyncio.get_running_loop()
    handed_over: float | None = None
    try:
        while True:
            batch: list[T] = []
            entry = await queue.get()
            while isinstance(entry, _Item):
                batch.append(entry.value)
                if len(batch) >= max_items:
                    break
                if not queue.empty():
                    entry = queue.get_nowait()
                    continue
                wait = 0.0 if handed_over is None else handed_over + linger_s - loop.time()
                if wait <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    break
            if batch:
                yield batch
                handed_over = loop.time()
            if isinstance(entry, _Failed):
                raise entry.error
            if isinstance(entry, _End):
                return
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
