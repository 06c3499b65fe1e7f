"""A pod's presence in Redis: one dedicated connection whose closing tells the other pods, within
a poll, that the pod's process is gone.

Contract:
- `probe(tokens)` runs on the dedicated connection (never the pool): it says which of the given
  presence tokens belong to connections open now, and gives this connection's own token
  `<run id>:<client id>`. The Redis run id changes on every Redis restart, so a token from
  before a restart is never taken for a closed connection of the current run (`unknown`).
- The connection is used on every poll, so Redis's idle `timeout` never closes it. When it was
  closed anyway (a Redis restart, a network cut) the next probe reconnects: the pod's token
  changes and it registers the new one at once (membership.py).
- A kill -9 of the pod closes its sockets, so Redis drops the connection at once. A paused or
  partitioned pod keeps its connection open: presence says nothing about it (its lease TTL
  does). A pod whose connection is cut while its process lives may be evicted early: that is
  safe (fencing), it rejoins with its next heartbeat.
- Redis Cluster: not used (client ids are per node); takeover waits for the lease TTL there.
Errors: a failed probe raises StoreUnavailable and nobody is judged gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from session_service.errors import StoreUnavailable
from session_service.store.redis_client import REDIS_ERRORS


@dataclass(frozen=True)
class Probe:
    own: str
    """This pod's presence token now."""
    open: frozenset[str]
    """The asked-for tokens of this Redis run whose connection is open."""
    run_id: str

    def closed(self, token: str) -> bool:
        """True only for a token of the current Redis run whose connection is not open."""
        run_id, _, _ = token.partition(":")
        return run_id == self.run_id and token not in self.open


class PresenceLink:
    """The dedicated connection; one probe at a time (membership's loop)."""

    def __init__(self, url: str, timeout_ms: int) -> None:
        timeout_s = timeout_ms / 1000
        self._client = aioredis.Redis.from_url(
            url,
            single_connection_client=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._run_id = ""
        self._client_id = 0

    async def probe(self, tokens: list[str]) -> Probe:
        try:
            client_id = int(await self._client.client_id())
            if client_id != self._client_id or not self._run_id:
                info = await self._client.info("server")
                self._run_id, self._client_id = str(info["run_id"]), client_id
            ids = [t.partition(":")[2] for t in tokens if t.partition(":")[0] == self._run_id]
            ids = [i for i in ids if i.isdigit()]
            listed = await self._list(ids) if ids else b""
        except REDIS_ERRORS as exc:
            self._client_id = 0  # reconnect and re-read the run id next time
            raise StoreUnavailable(f"redis: {exc}") from exc
        text = listed.decode()
        alive = {
            f"{self._run_id}:{field[3:]}"
            for line in text.splitlines()
            for field in line.split(" ", 1)[:1]
            if field.startswith("id=")
        }
        return Probe(f"{self._run_id}:{self._client_id}", frozenset(alive), self._run_id)

    async def _list(self, ids: list[str]) -> bytes:
        """CLIENT LIST ID: one line `id=<n> addr=...` per open connection among `ids`."""
        reply = await self._client.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "LIST", "ID", *ids
        )
        return reply if isinstance(reply, bytes) else str(reply).encode()

    async def close(self) -> None:
        await self._client.aclose()
