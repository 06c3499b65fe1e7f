"""The thread list read and changed by the user alone (docs/threads.md): listing, pinning,
archiving and read marks. Reads the user's keys and the threads' `meta` hashes only, so no
session owner is activated. Keys: keys.py; their writers: thread_index.py.

Pages are keyset-paged: a token names the section (p pinned, a active, r archived), the score
and the id of the page's last thread; the next page starts right after it in the same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

from session_service.errors import InvalidArgument, NotFound, StoreUnavailable
from session_service.store.keys import meta_key, thread_key, thread_keys
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.scripts import register

NOT_FOUND = "session not found"
"""The same answer as for any session the caller has no role in (access.py)."""
META_FIELDS = ("title", "pv", "la", "mc")
_TOKEN = re.compile(r"([par])\.([0-9]{1,16})\.([A-Za-z0-9_-]{1,128})")


@dataclass(frozen=True)
class Thread:
    session_id: str
    title: str
    preview: str
    last_activity_ms: int
    message_count: int
    unread: int
    pinned: bool
    archived: bool


@dataclass(frozen=True)
class ThreadPage:
    threads: list[Thread]
    next_token: str


def parse_token(token: str, archived: bool) -> tuple[str, int, str] | None:
    if not token:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None or (match.group(1) == "r") != archived:
        raise InvalidArgument("page_token is not one this list gave out")
    return match.group(1), int(match.group(2)), match.group(3)


class ThreadStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._flags = register(client, "thread_flags")
        self._mark_read = register(client, "mark_read")

    async def page(self, user: str, archived: bool, limit: int, token: str) -> ThreadPage:
        cursor = parse_token(token, archived)
        sections = ["r"] if archived else ["p", "a"]
        if cursor is not None:
            sections = sections[sections.index(cursor[0]) :]
        found: list[tuple[str, str, int]] = []  # (section, id, score)
        try:
            for section in sections:
                after = cursor[1:] if cursor is not None and cursor[0] == section else None
                want = limit + 1 - len(found)
                found += [
                    (section, sid, score)
                    for sid, score in await self._after(
                        thread_key(user, _KIND[section]), after, want
                    )
                ]
                if len(found) > limit:
                    break
            page = found[:limit]
            threads = await self._summaries(user, page)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        next_token = ""
        if len(found) > limit:
            section, sid, score = page[-1]
            next_token = f"{section}.{score}.{sid}"
        return ThreadPage(threads, next_token)

    async def _after(
        self, key: str, after: tuple[int, str] | None, want: int
    ) -> list[tuple[str, int]]:
        """Up to `want` members of the set, highest score first (ties: highest id first),
        after the (score, id) position."""
        if after is None:
            raw = await self._client.zrange(
                key,
                "+inf",
                "-inf",
                byscore=True,
                desc=True,
                offset=0,
                num=want,
                withscores=True,
            )
            return [(_text(m), int(s)) for m, s in cast(list[tuple[bytes, float]], raw)]
        score, sid = after
        pipe = self._client.pipeline(transaction=False)
        pipe.zrange(key, score, score, byscore=True, withscores=True)
        pipe.zrange(
            key,
            f"({score}",
            "-inf",
            byscore=True,
            desc=True,
            offset=0,
            num=want,
            withscores=True,
        )
        ties, rest = await pipe.execute()
        tied = sorted((m for m in (_text(m) for m, _ in ties) if m < sid), reverse=True)
        return ([(m, score) for m in tied] + [(_text(m), int(s)) for m, s in rest])[:want]

    async def _summaries(self, user: str, page: list[tuple[str, str, int]]) -> list[Thread]:
        if not page:
            return []
        pipe = self._client.pipeline(transaction=False)
        for _, sid, _ in page:
            pipe.hmget(meta_key(sid), list(META_FIELDS))
        metas = await pipe.execute()
        reads = await self._client.hmget(thread_key(user, "read"), [sid for _, sid, _ in page])
        return [
            _thread(sid, section, score, meta, read)
            for (section, sid, score), meta, read in zip(page, metas, reads, strict=True)
        ]

    async def set_flags(
        self, user: str, session_id: str, pinned: bool | None, archived: bool | None
    ) -> Thread:
        if pinned and archived:
            raise InvalidArgument("a thread cannot be pinned and archived at once")
        args = [session_id, _flag(pinned), _flag(archived)]
        try:
            section = _text(await self._flags(keys=thread_keys(user), args=args))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return await self._one(user, session_id, section)

    async def mark_read(self, user: str, session_id: str) -> Thread:
        try:
            count = int(await self._client.hget(meta_key(session_id), "mc") or 0)
            reply = await self._mark_read(keys=thread_keys(user), args=[session_id, count])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return await self._one(user, session_id, _text(reply))

    async def _one(self, user: str, session_id: str, section: str) -> Thread:
        if not section:
            raise NotFound(NOT_FOUND)
        try:
            score = await self._client.zscore(thread_key(user, _KIND[section]), session_id)
            threads = await self._summaries(user, [(section, session_id, int(score or 0))])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        thread: Thread = threads[0]
        return thread


_KIND = {"p": "pinned", "a": "active", "r": "archived"}


def _flag(value: bool | None) -> str:
    return "" if value is None else "1" if value else "0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _thread(
    sid: str, section: str, score: int, meta: list[bytes | None], read: bytes | str | None
) -> Thread:
    title, preview, activity, count = (_text(v) if v is not None else "" for v in meta)
    messages = int(count or 0)
    return Thread(
        session_id=sid,
        title=title,
        preview=preview,
        last_activity_ms=int(activity or score),
        message_count=messages,
        unread=max(0, messages - int(read or 0)),
        pinned=section == "p",
        archived=section == "r",
    )
