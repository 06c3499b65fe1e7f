"""The one linger batcher: groups an async stream into batches, bounded in size and read-ahead.

Used by the AI service (the model's chunks into Generate replies) and by the session service's
answering path (the AI service's deltas into the batches the owner stores and sends).

Contract of `batches(source, max_size, linger_s, size)`:

- What is flushed when. The consumer waits for one item, then takes every item already waiting
  and, after the first batch, what arrives until `linger_s` after the previous batch was handed
  over. A batch is flushed as soon as its size (the sum of `size(item)`, 1 per item unless given)
  reaches `max_size`, or the linger has run out, or nothing is waiting and no linger applies. So
  the first item is never delayed (time to first token is not), a slow source gives one batch
  per `linger_s`, a fast one is coalesced up to `max_size`. Order is kept; an item is never
  split, so a batch holds 1..max_size items when sizes are 1 and may pass `max_size` by less than
  its last item's size otherwise.
- The linger is seconds, or a function giving them that is asked once per batch (so a window can
  widen with load and shrink when it passes: `WideningWindow`).
- The end of the source flushes the tail at once (the linger never holds it back). A source error
  comes after the items before it: they are yielded first, then the error itself is raised.
- Backpressure at the bound. A producer task reads `source` into a queue of at most
  `max_size * QUEUED_BATCHES` items; when it is full the producer waits, so the source is not
  read: a slow consumer slows the source instead of buffering it without limit.
- Cancel and close. Closing the generator early (`aclose()`, or cancelling the task iterating
  it) cancels the producer and closes `source` (`aclose()` when it has one), which aborts an
  upstream call with it; items read but not yet handed over are dropped. Iterate it under
  `contextlib.aclosing` so a `break` or an error in the loop body closes it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

QUEUED_BATCHES = 4
"""Read-ahead, in batches of `max_size` items: past it the producer waits."""


Linger = float | Callable[[], float]
"""Seconds, or a function giving them, asked once per batch."""


@dataclass
class WideningWindow:
    """A linger that widens with the number of streams batching at once: `per_stream_s` for each
    stream open, never below `floor_s` nor above `ceiling_s`.

    Alone, a stream's batches leave every `floor_s` (a reader sees smooth text); under load each
    batch carries more chunks, so the per-message costs downstream (a gRPC message, a Redis
    script, a WebSocket frame per batch) are paid less often per token while the CPU is short.
    The first item of a stream is never delayed by it (see `batches`).
    """

    floor_s: float
    ceiling_s: float
    per_stream_s: float
    open: int = 0

    def __call__(self) -> float:
        return min(self.ceiling_s, max(self.floor_s, self.open * self.per_stream_s))

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """Counts one stream open for as long as the block runs."""
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


def one(_: object) -> int:
    """The default size of an item: batches are bounded by their number of items."""
    return 1


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
    source: AsyncIterator[T],
    max_size: int,
    linger_s: Linger = 0.0,
    size: Callable[[T], int] = one,
) -> AsyncGenerator[list[T], None]:
    """Yields lists of consecutive source items, each flushed by the rules in the module
    docstring; `max_size` must be at least 1 (ValueError otherwise, on the first `anext`)."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    queue: asyncio.Queue[_Entry[T]] = asyncio.Queue(maxsize=max_size * QUEUED_BATCHES)
    producer = asyncio.create_task(_produce(source, queue))
    loop = asyncio.get_running_loop()
    handed_over: float | None = None
    try:
        while True:
            linger = linger_s() if callable(linger_s) else linger_s
            batch: list[T] = []
            filled = 0
            entry = await queue.get()
            while isinstance(entry, _Item):
                batch.append(entry.value)
                filled += size(entry.value)
                if filled >= max_size:
                    break
                if not queue.empty():
                    entry = queue.get_nowait()
                    continue
                deadline = 0.0 if handed_over is None else handed_over + linger
                if deadline <= loop.time():
                    break
                try:
                    # A timeout scope, not wait_for: no task made per item waited for.
                    async with asyncio.timeout_at(deadline):
                        entry = await queue.get()
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


async def _produce(source: AsyncIterator[T], queue: asyncio.Queue[_Entry[T]]) -> None:
    """Copies `source` into `queue`, then an end or failure marker; always closes `source`."""
    async with contextlib.AsyncExitStack() as closing:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            closing.push_async_callback(aclose)
        try:
            async for value in source:
                await queue.put(_Item(value))
        except Exception as exc:
            await queue.put(_Failed(exc))
        else:
            await queue.put(_END)
