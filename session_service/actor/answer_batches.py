"""Groups an answer's incoming text into the batches the owner stores and sends.

While the owner stores one batch in Redis, the model's next chunks keep arriving in a queue; the
next batch is everything waiting then, and, unless it already holds `max_chunks` chunks, what
arrives until `linger_s` after the previous batch was handed over. So the first batch leaves at
once (time to first token is not delayed), later ones at most every `linger_s` or every
`max_chunks` chunks, whichever comes first, and the end of the answer or an error flushes at
once. A slow model therefore costs one Redis round trip per `linger_s`, not one per token.
Order is kept and no chunk is split. Closing the generator cancels the reader, which aborts the
model call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

_END = object()


async def batches(
    source: AsyncIterator[tuple[str, int]], max_chunks: int, linger_s: float = 0.0
) -> AsyncGenerator[str, None]:
    """(text, chunk count) items in, joined batches out; the source's error is raised here."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
            queue.put_nowait(_END)
        except Exception as exc:
            queue.put_nowait(exc)

    reader = asyncio.create_task(read())
    handed_over: float | None = None
    try:
        while True:
            texts: list[str] = []
            chunks = 0
            item = await queue.get()
            while item is not _END and not isinstance(item, Exception):
                text, count = cast(tuple[str, int], item)
                texts.append(text)
                chunks += count
                if chunks >= max_chunks:
                    break
                if not queue.empty():
                    item = queue.get_nowait()
                    continue
                wait = 0.0 if handed_over is None else handed_over + linger_s - loop.time()
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    break
            if texts:
                yield "".join(texts)
                handed_over = loop.time()
            if isinstance(item, Exception):
                raise item
            if item is _END:
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
