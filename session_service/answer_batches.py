"""Groups an answer's incoming text into the batches the owner stores and sends.

While the owner stores one batch in Redis, the model's next chunks keep arriving in a queue; the
next batch is everything waiting then (at most `max_chunks` chunks, at least one). So batches
grow with load and cost nothing when the model is slow: the stream has one Redis round trip per
batch, never one per token, and never waits on a timer. Order is kept and no chunk is split.
Closing the generator cancels the reader, which aborts the model call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

_END = object()


async def batches(
    source: AsyncIterator[tuple[str, int]], max_chunks: int
) -> AsyncGenerator[str, None]:
    """(text, chunk count) items in, joined batches out; the source's error is raised here."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
            queue.put_nowait(_END)
        except Exception as exc:
            queue.put_nowait(exc)

    reader = asyncio.create_task(read())
    try:
        while True:
            item = await queue.get()
            texts: list[str] = []
            chunks = 0
            while True:
                if item is _END or isinstance(item, Exception):
                    if texts:
                        yield "".join(texts)
                    if isinstance(item, Exception):
                        raise item
                    return
                text, count = cast(tuple[str, int], item)
                texts.append(text)
                chunks += count
                if chunks >= max_chunks or queue.empty():
                    break
                item = queue.get_nowait()
            yield "".join(texts)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
