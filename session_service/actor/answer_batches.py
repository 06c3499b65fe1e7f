"""Groups an answer's incoming text into the batches the owner stores and sends.

A thin use of the one linger batcher (common/batching.py, whose docstring is the contract),
sized in model chunks: while the owner stores one batch in Redis, the next deltas keep arriving;
the next batch is everything waiting then, and, unless it already holds `max_chunks` chunks,
what arrives until `linger_s` after the previous batch was handed over. So the first batch leaves
at once (time to first token is not delayed), later ones at most every `linger_s` or every
`max_chunks` chunks, whichever comes first, and the end of the answer or an error flushes at
once. A slow model therefore costs one Redis round trip per `linger_s`, not one per token. Order
is kept and no delta is split. Read-ahead is bounded (`batching.QUEUED_BATCHES` batches' worth of
deltas): past it the model stream is not read until the owner catches up. Closing the generator
closes the source, which aborts the model call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from common import batching


def _chunks(item: tuple[str, int]) -> int:
    return item[1]


async def batches(
    source: AsyncIterator[tuple[str, int]], max_chunks: int, linger_s: float = 0.0
) -> AsyncGenerator[str, None]:
    """(text, chunk count) items in, joined batches out; the source's error is raised here."""
    stream = batching.batches(source, max_chunks, linger_s, size=_chunks)
    async with contextlib.aclosing(stream):
        async for batch in stream:
            yield "".join(text for text, _ in batch)
