"""The call of the append script (lua/append.lua): its KEYS and its one JSON request, built from
named arguments. Pure: the store runs the result.

Contract:
- `keys` names every key it sends (the request's `keys` list, in KEYS order), so the script
  finds each by name (`key.meta`, `key.answer`, `key['read:' .. user]`); a side effect whose
  key is absent does not happen.
- On a Redis Cluster (`inline=False`) only the session's own keys are sent (one slot): the
  claim's count, the users' index, the feed and the purge queue are done by the caller
  around the write (sessions.py: `_reserve_session`, `follow_up`).
- Values go as strings, the way Redis stores them, so the script writes exactly what the
  caller meant (no JSON number rounding); the entries go as raw ARGV after the request.
"""

from __future__ import annotations

import json

from session_service.store import keys
from session_service.store.footprint import Claim, LogLimit
from session_service.store.thread_index import IndexUpdate


def append_call(
    *,
    session_id: str,
    epoch: int,
    now_ms: int,
    entries: list[bytes],
    client_id: str,
    expected_version: int | None,
    version_increment: int,
    ended_answer: int,
    index: IndexUpdate,
    log_limit: LogLimit | None,
    claim: Claim | None,
    inline: bool,
) -> tuple[list[str], list[bytes]]:
    """(KEYS, ARGV) of the append script for this write; `inline`: a single Redis, where every
    side effect runs in the write's own script."""
    named = {
        "meta": keys.meta_key(session_id),
        "log": keys.log_key(session_id),
        "idem": keys.idem_key(session_id),
    }
    request: dict[str, object] = {
        "session": session_id,
        "epoch": str(epoch),
        "now": str(now_ms),
        "version_increment": str(version_increment),
    }
    if client_id:
        request["client_id"] = client_id
    if expected_version is not None:
        request["expected_version"] = str(expected_version)
    if ended_answer:
        named["answer"] = keys.answer_key(session_id, ended_answer)
    if log_limit is not None:
        request["log_limit"] = {"bytes": str(log_limit.bytes), "events": str(log_limit.events)}
    if claim is not None:
        request["claim"] = {"owner": claim.user, "limit": str(claim.limit)}
        if inline:
            named["owned"] = keys.owned_key(claim.user)
    if index.fields:
        request["summary"] = [list(pair) for pair in index.fields]
    if inline and index.users:
        request["index"] = {
            "score": str(index.score),
            "message_count": str(index.message_count),
            "users": [list(pair) for pair in index.users],
        }
        for user, _ in index.users:
            for kind, key in zip(keys.THREAD_KINDS, keys.thread_keys(user), strict=True):
                named[f"{kind}:{user}"] = key
    if inline and index.feed:
        named["feed"] = keys.FEED_KEY
        request["feed_maxlen"] = str(keys.FEED_MAXLEN)
    if inline and index.purge:
        named["purge"] = keys.PURGE_KEY
        request["purge"] = index.purge
    request["keys"] = list(named)
    body = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
    return list(named.values()), [body.encode(), *entries]
