"""Whether the Redis that holds the sessions keeps what it acknowledged: read, not assumed.

A pod acknowledges a write once Redis answered it (docs/guarantees.md); that is durable only if
Redis had written the write to its append-only file and fsynced it before answering, which is
`appendonly yes` with `appendfsync always`. `everysec` loses up to a second of acknowledged
writes on a crash of Redis's machine (and of Redis itself while a write waits for its fsync);
`no` leaves it to the kernel; without the AOF a restart loses everything since the last snapshot.

Contract:
- `settings(client)` reads `CONFIG GET appendonly appendfsync` from the one Redis, or from every
  master of a Redis Cluster (each holds its own slots; one weak master loses its sessions).
- `refusal(found)` is None when every node has appendonly=yes and appendfsync=always; else one
  line naming the node, the setting it has, the setting needed and the override.
- A Redis that refuses CONFIG (renamed or blocked by ACL, as managed services do) is a refusal
  too, saying so: only an operator who knows the service fsyncs every write may then set
  REDIS_DURABILITY=trust (the override; also for tests and dev on a throwaway Redis).
- Redis unreachable is not a verdict: `settings` raises a REDIS_ERRORS error and the caller
  asks again once Redis answers (a pod does not serve before it has a verdict).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

from session_service.store.redis_client import RedisClient

OVERRIDE = "REDIS_DURABILITY=trust"
NEEDED = {"appendonly": "yes", "appendfsync": "always"}


@dataclass(frozen=True)
class NodeDurability:
    """What one Redis node said; `unreadable` is why CONFIG GET failed ("" when it answered)."""

    node: str
    appendonly: str = ""
    appendfsync: str = ""
    unreadable: str = ""


async def settings(client: RedisClient) -> list[NodeDurability]:
    """Each node's persistence settings (every master of a cluster)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        return [await _node_reply(n.name, client, n) for n in client.get_primaries()]
    kwargs = client.connection_pool.connection_kwargs
    name = f"{kwargs.get('host', '')}:{kwargs.get('port', '')}"
    return [await _node_reply(name, client, None)]


async def _node_reply(name: str, client: RedisClient, node: object) -> NodeDurability:
    target = {"target_nodes": node} if node is not None else {}
    try:
        raw = await client.execute_command("CONFIG GET", "appendonly", "appendfsync", **target)
    except (ResponseError, NoPermissionError) as exc:  # renamed, disabled or not permitted
        return NodeDurability(name, unreadable=str(exc))
    pairs = _as_dict(raw)
    return NodeDurability(name, pairs.get("appendonly", ""), pairs.get("appendfsync", ""))


def _as_dict(raw: object) -> dict[str, str]:
    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    if isinstance(raw, dict):
        return {text(k): text(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return {text(raw[i]): text(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {}


def refusal(found: list[NodeDurability]) -> str | None:
    """None if every node fsyncs each write before answering; else why not, in one line."""
    for node in found:
        if node.unreadable:
            return (
                f"cannot verify Redis durability at {node.node}: CONFIG GET appendonly "
                f"appendfsync failed ({node.unreadable}); a managed Redis may hide CONFIG: if it "
                f"writes every write to its AOF and fsyncs it before answering, set {OVERRIDE}"
            )
        have = {"appendonly": node.appendonly, "appendfsync": node.appendfsync}
        for setting, needed in NEEDED.items():
            if have[setting] != needed:
                return (
                    f"Redis at {node.node} has {setting}={have[setting] or '?'}; acknowledged "
                    f"writes need appendonly=yes and appendfsync=always (set them on Redis, or "
                    f"{OVERRIDE} for tests and dev on a Redis you may lose)"
                )
    return None


class NotDurable(Exception):
    """Redis does not fsync acknowledged writes (or cannot say): the pod must not serve."""
