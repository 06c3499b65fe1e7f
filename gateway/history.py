"""History replies bounded in bytes: the newest messages of a session that fit a budget.

Contract (docs/bounded-reads.md):
- Guaranteed: the messages of one `(GET_HISTORY)` frame or `GET /api/chat/session/{id}` answer
  take at most MAX_HISTORY_REPLY_BYTES of encoded JSON (commas included): the newest messages of
  the active branch that fit, oldest first, with no gap. When older messages are left out the
  reply says how many (`omitted`) and `beforeSeq`, the seq of the oldest message shown (when
  none fits: one past the newest); every omitted message has a smaller seq, and
  `GET /api/chat/session/{id}/messages?after=0` pages them. A history that fits is answered as
  before (the seed contract).
- Load: the history is read page by page (PAGE_SIZE messages; pods end a page before 4 MiB)
  keeping only the newest that fit, so a reply holds at most the budget plus one page in
  memory, however long the history. The whole log is still read (pods have no backward paging),
  so the time of a reply grows with the history's length.
- Bad input: none of its own; a message larger than the budget is omitted with all before it.
- Failure: an upstream error of any page fails the reply (UpstreamError); nothing partial is
  sent.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.upstream import SessionClient
from gateway.wire_json import history_json

PAGE_SIZE = 1000
NOTICE_ROLE = "notice"
"""The role of the marker a `(GET_HISTORY)` frame starts with when messages were omitted: no
stored message has it, and clients that print `role: content` show the marker's words."""


@dataclass(frozen=True)
class Tail:
    """The newest messages that fit, encoded, oldest first; how many older ones were left out."""

    items: list[bytes]
    omitted: int
    before_seq: int
    """0 when nothing was omitted."""


Encode = Callable[[dict[str, Any]], bytes]


async def newest_that_fit(
    client: SessionClient, session_id: str, max_bytes: int, encode: Encode
) -> Tail:
    """Reads the session's messages in seq order and keeps the newest whose encodings (joined
    by commas) take at most `max_bytes`."""
    kept: deque[tuple[int, bytes]] = deque()
    size = 0
    """Bytes of the kept encodings, without the commas between them."""
    omitted = 0
    newest = 0
    after = 0
    while True:
        page = await client.list_messages(session_id, after, PAGE_SIZE)
        for message in page.messages:
            data = encode(message)
            kept.append((message["seq"], data))
            size += len(data)
            while kept and size + len(kept) - 1 > max_bytes:
                size -= len(kept.popleft()[1])
                omitted += 1
            newest = message["seq"]
        if not page.has_more or not page.messages:
            break
        after = page.messages[-1]["seq"]
    before_seq = (kept[0][0] if kept else newest + 1) if omitted else 0
    return Tail([data for _, data in kept], omitted, before_seq)


def history_item(message: dict[str, Any]) -> bytes:
    """One message as the seed-000 `(GET_HISTORY)` frame shows it."""
    return json.dumps(history_json(message), ensure_ascii=False).encode()


def history_frame(tail: Tail, max_bytes: int) -> bytes:
    """The `(GET_HISTORY)` answer: a JSON array of the messages, led by a notice when some were
    omitted (at most HISTORY_FRAME_SLACK_BYTES more than the messages)."""
    items = tail.items
    if tail.omitted:
        notice = {
            "role": NOTICE_ROLE,
            "content": (
                f"{tail.omitted} older messages are not shown: the history is larger than"
                f" MAX_HISTORY_REPLY_BYTES ({max_bytes}); read them with"
                " GET /api/chat/session/{id}/messages?after=0"
            ),
            "omitted": tail.omitted,
            "beforeSeq": tail.before_seq,
        }
        items = [json.dumps(notice).encode(), *items]
    return b"[" + b",".join(items) + b"]"


def object_with_list(fields: dict[str, Any], key: str, items: list[bytes]) -> bytes:
    """`fields` as a JSON object with `key` set to the array of the already encoded `items`
    (`fields` must not hold `key`), so a long list is not decoded and encoded again."""
    head = json.dumps({**fields, key: None}).encode()  # the key comes last: `"key": null}`
    return head[: -len(b"null}")] + b"[" + b",".join(items) + b"]}"
