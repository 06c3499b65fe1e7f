"""Every Redis key the session service and its search indexer use: the one place key names are
built. Each entry names the key's type, what it holds, how long it lives and its hash tag.

Hash tags: on a Redis Cluster every key of one script run shares one tag (the `{…}` part), so
the script touches one slot. Session keys carry `{S}` (the session id), a user's keys `{U}`, an
attachment's `{SHA}`; membership keys share `{dc-cluster}`. The purge queue and the search feed
have no tag: on a single Redis the append script writes them with the session's keys, on a Redis
Cluster separate calls do (sessions.py `follow_up`, purge_queue.py).

Two prefix styles are in use and stay, because stored data is read by them:
- `dc:{ID}:<what>` and `dc:u:{U}:<what>`: the id first (session keys, a user's sets);
- `dc:<what>:{ID}`: the kind first (usage totals, attachments, and common/'s rate-limit and
  revocation keys). Renaming a style would need a migration of every deployment's data.
Session ids carry no braces (rpc/validate.py), so `{S}` is always the whole tag.

Not built here, because other programs share them (common/ may import no service):
- `dc:rl:{<subject>}:<bucket>`: a token bucket (hash `tokens`, `ts_ms`; expires once refilled),
  common/ratelimit.py `bucket_key`: the gateway's per-IP limits, the pods' quotas
  (rpc/quotas.py) and search's rate (search/rate.py).
- `dc:auth:revoked:{U}`: a user's revocation time (string, seconds; kept), common/revocation.py:
  written by the admin CLI, read by the pods and search.
"""

from __future__ import annotations

# --- one session: hash tag {S} ------------------------------------------------------------------


def meta_key(session_id: str) -> str:
    """Hash, kept until purged (its `epoch` field survives the purge). Fields:
    `epoch` owner epoch (activation adds 1), `version` optimistic-concurrency version,
    `created`/`accessed` ms, `lb` bytes of the log's entries, `own` the owner (footprint.py);
    the thread summary `title`, `pv` preview, `la` last activity ms, `mc` message count,
    `del` deleted at ms, `pg` purge at ms (thread_index.py)."""
    return f"dc:{{{session_id}}}:meta"


def log_key(session_id: str) -> str:
    """List of the session's log entries (opaque bytes, log/events.py); an entry's seq is its
    1-based position. Kept until purged."""
    return f"dc:{{{session_id}}}:log"


def idem_key(session_id: str) -> str:
    """Hash: client message id → seq of the first entry its write stored. Kept until purged."""
    return f"dc:{{{session_id}}}:idem"


def lease_key(session_id: str) -> str:
    """String `<pod id>:<epoch>`: the pod serving the session; expires after LEASE_TTL_MS
    unless renewed, deleted on release and by nothing else."""
    return f"dc:{{{session_id}}}:lease"


def answer_key(session_id: str, answer_seq: int) -> str:
    """List of the stored delta batches of the open answer `answer_seq`, in order; deleted by
    the write of the answer's end."""
    return f"dc:{{{session_id}}}:ans:{answer_seq}"


def snapshot_key(session_id: str) -> str:
    """Hash `seq` (the log prefix it covers), `from` (the first seq an activation loads with
    it), `body` (log/snapshot.py): the session's newest snapshot. Replaced by newer ones
    (lua/snapshot.lua), deleted with the log by a purge."""
    return f"dc:{{{session_id}}}:snap"


LOG_KEY_PATTERN = "dc:{*}:log"
"""SCAN pattern matching every session's log (the search indexer's rebuild)."""


def session_of_log_key(key: str) -> str:
    """The session id in a `log_key`."""
    return key[len("dc:{") : -len("}:log")]


# --- one user: hash tag {U} ---------------------------------------------------------------------


def owned_key(user: str) -> str:
    """Set of the session ids `user` owns (MAX_SESSIONS_PER_USER, footprint.py). A purged
    session leaves it; kept otherwise."""
    return f"dc:u:{{{user}}}:owned"


def attachments_key(user: str) -> str:
    """Hash: sha256 → size of each file `user` uploaded (MAX_ATTACHMENT_BYTES_PER_USER). Kept."""
    return f"dc:u:{{{user}}}:att"


def attachment_bytes_key(user: str) -> str:
    """String: the sum of the sizes in `attachments_key(user)`. Kept."""
    return f"dc:u:{{{user}}}:attb"


THREAD_KINDS = ("active", "pinned", "archived", "read")
"""A user's thread-index keys, in the order the index scripts take them."""


def thread_key(user: str, kind: str) -> str:
    """`user`'s thread index (docs/threads.md), one of THREAD_KINDS: `active`, `pinned`,
    `archived` are sorted sets (thread id scored by its last activity ms), `read` a hash (thread
    id → messages read). A thread leaves them when deleted or when the user loses their role."""
    return f"dc:u:{{{user}}}:{kind}"


def thread_keys(user: str) -> list[str]:
    """`user`'s four thread-index keys, in THREAD_KINDS order."""
    return [thread_key(user, kind) for kind in THREAD_KINDS]


def usage_key(user: str) -> str:
    """Hash `prompt`, `completion`, `regenerated`, `answers`: `user`'s token totals over all
    sessions (usage.py). Kept."""
    return f"dc:usage:{{{user}}}"


# --- one attachment: hash tag {SHA} -------------------------------------------------------------


def attachment_meta_key(sha: str) -> str:
    """Hash `size`, `mime`, `created` of a stored file (its bytes are on disk). Kept."""
    return f"dc:att:{{{sha}}}"


def uploaders_key(sha: str) -> str:
    """Set of the users who may attach the file (its uploaders, readers of a fork). Kept."""
    return f"dc:att:{{{sha}}}:by"


# --- the cluster: hash tag {dc-cluster} ---------------------------------------------------------

MEMBERS_KEY = "{dc-cluster}:members"
"""Sorted set: pod id scored by its heartbeat's expiry (ms, Redis server time); entries past
their expiry are dropped by the next heartbeat (members.py)."""
ADDRS_KEY = "{dc-cluster}:addrs"
"""Hash: pod id → its address; an entry leaves with its pod's `MEMBERS_KEY` entry."""
CONNS_KEY = "{dc-cluster}:conns"
"""Hash: pod id → its presence token `<Redis run id>:<client id>`: the Redis connection whose
closing means the pod's process is gone (cluster/presence.py); leaves with its pod."""
GONE_KEY = "{dc-cluster}:gone"
"""Sorted set: pod id evicted because its presence connection closed, scored by the ms (Redis
time) until which its leases may be broken at once (a lease TTL after the eviction)."""

# --- queues shared by all sessions: no hash tag -------------------------------------------------

PURGE_KEY = "dc:purge"
"""Sorted set: deleted thread id scored by the ms its purge is due; a thread leaves it when
purged or restored (features/threads/purge.py)."""
FEED_KEY = "dc:search:feed"
"""Stream of hints `s` = session id: "this session has new messages or access changes", read by
the search indexer's consumer group (search/indexer.py), which then reads the session's log.
Trimmed to about FEED_MAXLEN entries."""
FEED_MAXLEN = 1_000_000
