"""What a log write changes in the thread index (docs/threads.md): the thread's summary in its
`meta` hash and each member's thread sets. Pure: the store runs the result (lua/append.lua, in
the write's script on one Redis; lua/index_one.lua after it on a Redis Cluster).

Per member the index keeps four keys on the user's slot (keys.thread_keys): the `active`,
`pinned` and `archived` sets (thread id → last activity) and the `read` hash (thread id →
messages read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from session_service.log.session import Session

PREVIEW_CHARS = 200

TOUCH = "t"
"""Put the thread in the user's sets (active unless pinned or archived), score = activity."""
READ = "r"
"""TOUCH, and the user has read every message so far (their own post)."""
REMOVE = "x"
"""Take the thread out of the user's sets and forget their read mark."""


@dataclass(frozen=True)
class IndexUpdate:
    """The index changes of one write."""

    fields: tuple[tuple[str, str], ...] = ()
    """`meta` fields to set; an empty value deletes the field."""
    score: int = 0
    """The thread's last activity (ms) after the write."""
    message_count: int = 0
    users: tuple[tuple[str, str], ...] = ()
    """(user, TOUCH | READ | REMOVE)."""
    purge: str = ""
    """"" nothing, "rem" take off the purge queue, else the purge time (ms) to queue it at."""
    feed: bool = True
    """Hint the search indexer (keys.FEED_KEY) that the session changed."""
    owner: str = ""
    """Count the session among its owner's (footprint.py); only on activation's repair."""

    @property
    def crosses_slots(self) -> bool:
        return bool(self.users or self.purge or self.feed)


def _kind(entry: bytes) -> str:
    # Every stored entry starts with `{"k":"<kind>"` (events.py).
    return entry[6:7].decode()


LISTED = frozenset("megndr")
"""Entry kinds that change the index: messages, answer ends, grants, renames, deletes, restores."""


def update_for(session: Session, entries: list[bytes]) -> IndexUpdate | None:
    """The index changes of writing `entries` after `session`'s current events; None when the
    write changes nothing listed (state patches, answer starts, invites)."""
    kinds = [_kind(e) for e in entries]
    if LISTED.isdisjoint(kinds):
        return None
    fields: list[tuple[str, str]] = []
    roles = dict(session.roles)
    score = session.last_activity_ms
    count = session.message_count
    users: dict[str, str] = {}
    deleted = bool(session.deleted_ms)
    purge = ""
    posted = False
    for kind, raw in zip(kinds, entries, strict=True):
        if kind not in LISTED:
            continue
        entry = json.loads(raw)
        if kind in ("m", "e"):
            count += 1
            score = int(entry["t"])
            fields += [("pv", str(entry["c"])[:PREVIEW_CHARS]), ("la", str(score))]
            posted = True
            if kind == "m" and entry.get("u"):
                users[entry["u"]] = READ
        elif kind == "g":
            if entry["r"]:
                roles[entry["u"]] = entry["r"]
                users.setdefault(entry["u"], TOUCH)
            else:
                roles.pop(entry["u"], None)
                users[entry["u"]] = REMOVE
        elif kind == "n":
            fields.append(("title", entry["n"]))
        elif kind == "d":
            deleted, purge = True, str(int(entry["x"]))
            fields += [("del", str(int(entry["t"]))), ("pg", purge)]
        else:
            deleted, purge = False, "rem"
            fields += [("del", ""), ("pg", "")]
    if posted:
        fields.append(("mc", str(count)))
        for user in roles:
            users.setdefault(user, TOUCH)
    if deleted:
        users = dict.fromkeys([*roles, *users], REMOVE)
    elif purge == "rem":
        users.update(dict.fromkeys(roles, TOUCH))
    # Only users with a role have the thread in their lists (an imported message's author who
    # is no member does not); removals always go through.
    users = {u: op for u, op in users.items() if u and (op == REMOVE or u in roles)}
    # A thread with no message yet is listed at the time of this write.
    score = score or int(json.loads(entries[0])["t"])
    return IndexUpdate(tuple(fields), score, count, tuple(users.items()), purge)


def repair_for(session: Session) -> IndexUpdate | None:
    """Every member's entries as they should be: rewritten on activation, which repairs a
    follow-up write a crash cut off (Redis Cluster) and indexes threads older than the index."""
    if not session.roles:
        return None
    op = REMOVE if session.deleted_ms else TOUCH
    score = session.last_activity_ms or session.first_ts_ms
    users = tuple((user, op) for user in session.roles if user)
    purge = str(session.purge_ms) if session.deleted_ms else ""
    return IndexUpdate((), score, session.message_count, users, purge, owner=session.owner)
