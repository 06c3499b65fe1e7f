"""History replies bounded in bytes (gateway/history.py): the newest messages that fit, no gap,
and a count of the older ones left out."""

from __future__ import annotations

import json
from typing import Any

from gateway.history import Tail, history_frame, newest_that_fit, object_with_list
from gateway.upstream import Page


class PagedLog:
    """Serves ListMessages pages of a fixed history, as a session pod does (the real one is
    exercised by tests/security/test_bounded_reads.py)."""

    def __init__(self, contents: list[str], page_size: int = 3) -> None:
        self.messages: list[dict[str, Any]] = [
            {"seq": seq, "role": "user", "content": text, "user": "ann", "ts": 0}
            for seq, text in enumerate(contents, start=1)
        ]
        self.page_size = page_size
        self.pages_read = 0

    async def list_messages(self, session_id: str, after: int, limit: int) -> Page:
        self.pages_read += 1
        rest = [m for m in self.messages if m["seq"] > after]
        page = rest[: self.page_size]
        return Page(page, len(rest) > len(page), self.messages[-1]["seq"] if self.messages else 0)


def encode(message: dict[str, Any]) -> bytes:
    return str(message["content"]).encode()


async def fit(contents: list[str], max_bytes: int) -> Tail:
    return await newest_that_fit(PagedLog(contents), "s", max_bytes, encode)  # type: ignore[arg-type]


async def test_a_history_that_fits_is_whole():
    tail = await fit(["aa", "bb", "cc"], 8)  # 2 + 1 + 2 + 1 + 2 bytes with commas
    assert (tail.items, tail.omitted, tail.before_seq) == ([b"aa", b"bb", b"cc"], 0, 0)


async def test_the_newest_messages_that_fit_are_kept_over_many_pages():
    tail = await fit([f"m{i}" for i in range(10)], 8)  # three of 2 bytes + 2 commas
    assert tail.items == [b"m7", b"m8", b"m9"]
    assert (tail.omitted, tail.before_seq) == (7, 8)


async def test_a_message_over_the_budget_hides_everything_before_it():
    tail = await fit(["a", "b", "x" * 50, "c"], 8)
    assert tail.items == [b"c"]
    assert (tail.omitted, tail.before_seq) == (3, 4)


async def test_nothing_fits_points_past_the_newest():
    tail = await fit(["x" * 50], 8)
    assert (tail.items, tail.omitted, tail.before_seq) == ([], 1, 2)


def test_a_frame_of_a_whole_history_is_the_seed_array():
    frame = history_frame(Tail([b'{"content": "a"}'], 0, 0), 100)
    assert json.loads(frame) == [{"content": "a"}]


def test_a_frame_of_a_cut_history_starts_with_a_notice():
    frame = json.loads(history_frame(Tail([b'{"content": "z"}'], 5, 9), 100))
    notice = frame[0]
    assert (notice["role"], notice["omitted"], notice["beforeSeq"]) == ("notice", 5, 9)
    assert "MAX_HISTORY_REPLY_BYTES" in notice["content"]
    assert frame[1:] == [{"content": "z"}]


def test_an_object_gets_its_list_spliced_in_as_json():
    body = object_with_list({"k": "v", "n": 1}, "messages", [b"1", b'{"a": 2}'])
    assert json.loads(body) == {"k": "v", "n": 1, "messages": [1, {"a": 2}]}
    assert json.loads(object_with_list({"k": 1}, "messages", [])) == {"k": 1, "messages": []}
