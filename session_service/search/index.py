"""The search database: SQLite FTS5 (the standard library's sqlite3), one file, one writer.

Tables: `msg` (FTS5: content, with session, seq, role, user, time unindexed), `threads` (the
seq indexed so far, deleted flag, title) and `members` (who may find a thread's messages).
Pure storage: the indexer decides what goes in (indexer.py), the servicer asks (servicer.py);
both call it from worker threads (workers.py), never on the event loop. A search runs on its own
read connection (WAL: readers never wait for the writer) and is interrupted when it runs longer
than its budget (QueryTooCostly).
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from session_service.errors import InvalidArgument, TooBusy

MAX_QUERY_WORDS = 20
MAX_QUERY_CHARS = 500
MIN_TERM_CHARS = 3
"""Default of SEARCH_MIN_TERM_CHARS: the shortest prefix term (`ab*` expands to every word)."""
BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for another's write lock before failing."""
PROGRESS_OPS = 1000
"""SQLite VM steps between checks of a query's time budget."""
_WORD = re.compile(r"\w+")
START, END = "\x01", "\x02"
"""Marks FTS5 puts around matches in snippets; removed from indexed text beforehand."""

SCHEMA_VERSION = 2
"""PRAGMA user_version of the tables below; a file of another version is emptied and refilled."""
SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS msg USING fts5(
  content, session_id UNINDEXED, seq UNINDEXED, role UNINDEXED, user UNINDEXED,
  ts UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS threads (
  session_id TEXT PRIMARY KEY, indexed_seq INTEGER NOT NULL, deleted INTEGER NOT NULL,
  title TEXT NOT NULL, created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
  session_id TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY (session_id, user)
);
"""


@dataclass(frozen=True)
class Hit:
    session_id: str
    seq: int
    role: str
    user: str
    ts_ms: int
    snippet: str
    highlights: list[tuple[int, int]]
    title: str


class QueryTooCostly(TooBusy):
    """A search ran longer than SEARCH_QUERY_MS and was stopped: RESOURCE_EXHAUSTED. Use rarer
    or fewer words."""


def fts_query(text: str, min_term_chars: int = MIN_TERM_CHARS) -> str:
    """The user's words as an FTS5 query: every word quoted (no operators get through). Bounded
    in cost: at most MAX_QUERY_CHARS characters and MAX_QUERY_WORDS words (repeats count
    once), and a prefix term (`word*`) has at least `min_term_chars` characters."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"query is longer than {MAX_QUERY_CHARS} characters")
    words = list(dict.fromkeys(_WORD.findall(text)))
    if not words:
        raise InvalidArgument("query has no words to search for")
    if len(words) > MAX_QUERY_WORDS:
        raise InvalidArgument(f"query has more than {MAX_QUERY_WORDS} different words")
    quoted = [f'"{word}"' for word in words]
    if text.rstrip().endswith("*"):
        last = _WORD.findall(text)[-1]
        if len(last) < min_term_chars:
            raise InvalidArgument(
                f"a prefix search (word*) needs at least {min_term_chars} characters before the"
                f" '*' (SEARCH_MIN_TERM_CHARS); {last!r}* would match too many words"
            )
        quoted[words.index(last)] += "*"
    return " ".join(quoted)


def marked(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """The snippet without its match marks, and where the marks were."""
    plain: list[str] = []
    ranges: list[tuple[int, int]] = []
    start = 0
    length = 0
    for char in snippet:
        if char == START:
            start = length
        elif char == END:
            ranges.append((start, length))
        else:
            plain.append(char)
            length += 1
    return "".join(plain), ranges


def _connect(path: Path | str) -> sqlite3.Connection:
    # One thread at a time uses a connection (workers.py), not always the thread that made it.
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


class SearchReader:
    """A read connection for searches; used by one thread at a time. A search over
    `budget_ms` is interrupted (QueryTooCostly)."""

    def __init__(self, path: Path | str, min_term_chars: int, budget_ms: int) -> None:
        self._db = _connect(path)
        self._min_term_chars = min_term_chars
        self._budget_s = budget_ms / 1000
        self._deadline = 0.0
        self._db.set_progress_handler(self._over_budget, PROGRESS_OPS)

    def _over_budget(self) -> bool:
        return time.monotonic() > self._deadline

    def close(self) -> None:
        self._db.close()

    def search(self, user: str, query: str, session_id: str, limit: int, offset: int) -> list[Hit]:
        """Up to `limit` hits (best first) after `offset`, in threads `user` is a member of."""
        match = fts_query(query, self._min_term_chars)
        self._deadline = time.monotonic() + self._budget_s
        try:
            rows = self._db.execute(
                "SELECT m.session_id, m.seq, m.role, m.user, m.ts,"
                f" snippet(msg, 0, '{START}', '{END}', '…', 16), t.title"
                " FROM msg AS m"
                " JOIN members AS u ON u.session_id = m.session_id AND u.user = ?"
                " JOIN threads AS t ON t.session_id = m.session_id AND t.deleted = 0"
                " WHERE msg MATCH ? AND (? = '' OR m.session_id = ?)"
                " ORDER BY bm25(msg) LIMIT ? OFFSET ?",
                (user, match, session_id, session_id, limit, offset),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            raise QueryTooCostly(
                f"the search ran longer than {int(self._budget_s * 1000)} ms (SEARCH_QUERY_MS)"
                " and was stopped; search for rarer or fewer words"
            ) from exc
        hits = []
        for sid, seq, role, author, ts, snippet, title in rows:
            text, ranges = marked(snippet)
            hits.append(Hit(sid, int(seq), role, author, int(ts), text, ranges, title))
        return hits


class SearchIndex:
    """The writer connection: tables, the indexer's rows. Used by one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self._db = _connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA secure_delete = ON")  # a purged thread's text is overwritten
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        self.fresh = version != SCHEMA_VERSION
        """True when the file was new or of an older layout: it must be filled from Redis."""
        if self.fresh:
            for table in ("msg", "threads", "members"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def position(self, session_id: str) -> tuple[int, int]:
        """(seq indexed so far, the session's creation time then): a different creation time
        means the id was purged and names a new session now."""
        row = self._db.execute(
            "SELECT indexed_seq, created FROM threads WHERE session_id = ?", (session_id,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def begin(self) -> None:
        self._db.execute("BEGIN")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def forget(self, session_id: str) -> None:
        """Everything about a session (purged; its id may name a new one)."""
        for table in ("msg", "threads", "members"):
            self._db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    def add_message(
        self, session_id: str, seq: int, role: str, user: str, content: str, ts_ms: int
    ) -> None:
        text = content.replace(START, " ").replace(END, " ")
        self._db.execute(
            "INSERT INTO msg (content, session_id, seq, role, user, ts) VALUES (?, ?, ?, ?, ?, ?)",
            (text, session_id, seq, role, user, ts_ms),
        )

    def set_member(self, session_id: str, user: str, member: bool) -> None:
        if member:
            self._db.execute(
                "INSERT OR IGNORE INTO members (session_id, user) VALUES (?, ?)", (session_id, user)
            )
        else:
            self._db.execute(
                "DELETE FROM members WHERE session_id = ? AND user = ?", (session_id, user)
            )

    def set_thread(
        self,
        session_id: str,
        indexed_seq: int,
        created: int,
        deleted: bool | None,
        title: str | None,
    ) -> None:
        """Records how far the session is indexed (and its deleted flag and title, if known)."""
        self._db.execute(
            "INSERT INTO threads (session_id, indexed_seq, deleted, title, created)"
            " VALUES (?, ?, 0, '', ?) ON CONFLICT (session_id) DO UPDATE"
            " SET indexed_seq = excluded.indexed_seq, created = excluded.created",
            (session_id, indexed_seq, created),
        )
        if deleted is not None:
            self._db.execute(
                "UPDATE threads SET deleted = ? WHERE session_id = ?", (int(deleted), session_id)
            )
        if title is not None:
            self._db.execute(
                "UPDATE threads SET title = ? WHERE session_id = ?", (title, session_id)
            )
