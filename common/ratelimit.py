"""Token bucket rate limits kept in Redis: per-user and per-IP request rates, model-token budgets.

Contract:
- A bucket holds up to `capacity` tokens and refills at `refill_per_s`. Its state lives in the
  hash `dc:rl:{<key>}:<bucket name>` as `{tokens, ts_ms}` (decimal strings, 17 significant
  digits), where `key` names the subject (`user:ann`, `ip:10.0.0.7`). A missing hash is a full
  bucket; every write sets PEXPIRE to the time the bucket needs to refill fully, so idle
  buckets vanish.
- Every check is one Lua script run (registered once, run by EVALSHA) that reads the clock with
  `redis.call('TIME')`: the clocks of the processes sharing the limits do not matter.
- `take` takes `cost` tokens if they are there; otherwise it takes nothing and `retry_after_ms`
  says when they will be (rounded up, >= 1). A cost above a bucket's capacity could never pass
  and raises ValueError before Redis is asked. `take(bucket, key, 0)` is a peek that refuses
  only while the bucket is in debt.
- `take_all` checks several buckets of ONE subject (e.g. per-minute and per-day budgets) and is
  all-or-nothing: if any bucket refuses, none is taken, and `retry_after_ms` is the longest wait.
  The keys differ only after the hash tag `{<key>}`, so they share a Redis Cluster slot.
- `charge` takes tokens unconditionally, for amounts known only afterwards (model tokens of a
  finished answer); a negative charge refunds (never beyond the capacity). The balance may go
  negative; takes are then refused until the debt is repaid by refill and the cost is there.
- Redis errors surface as redis-py's exceptions (RedisError, RedisClusterException, OSError).
  Callers choose deliberately whether to fail open or closed; for abuse limits we fail open
  and log the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

RedisClient = aioredis.Redis | aioredis.RedisCluster

# KEYS: the buckets of one subject. ARGV: mode ('take' | 'charge'), cost, then per key its
# capacity and refill per second. Replies {allowed, lowest balance, retry after ms}; the
# balance is a string because Redis truncates Lua numbers to integers.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[2])
local have, wait, low = {}, 0, math.huge
for i, key in ipairs(KEYS) do
  local cap, rate = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2]) / 1000
  local s = redis.call('HMGET', key, 'tokens', 'ts_ms')
  have[i] = cap
  if s[1] then
    have[i] = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
  end
  if have[i] < cost then wait = math.max(wait, (cost - have[i]) / rate) end
end
if wait > 0 and ARGV[1] == 'take' then
  for i = 1, #KEYS do low = math.min(low, have[i]) end
  return {0, string.format('%.17g', low), math.max(1, math.ceil(wait))}
end
for i, key in ipairs(KEYS) do
  local cap, rate = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2]) / 1000
  local left = math.min(cap, have[i] - cost)
  low = math.min(low, left)
  local full_in = math.ceil((cap - left) / rate)
  if full_in > 0 then
    redis.call('HSET', key, 'tokens', string.format('%.17g', left),
               'ts_ms', string.format('%.17g', now))
    redis.call('PEXPIRE', key, full_in)
  else
    redis.call('DEL', key)
  end
end
return {1, string.format('%.17g', low), math.ceil(wait)}
"""


@dataclass(frozen=True)
class Bucket:
    """A limit: up to `capacity` tokens, refilled continuously at `refill_per_s`."""

    name: str
    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        if not self.name or self.capacity <= 0 or self.refill_per_s <= 0:
            raise ValueError(f"bucket needs a name and positive capacity and refill: {self}")


@dataclass(frozen=True)
class Decision:
    """The outcome of a check. `remaining` is the lowest balance of the buckets involved after
    the call (before it, when refused; negative while in debt). `retry_after_ms` is 0 when
    allowed; when refused, the wait until `cost` tokens are there in every bucket; after a
    `charge`, the wait until no bucket is in debt."""

    allowed: bool
    remaining: float
    retry_after_ms: int


def bucket_key(bucket: Bucket, key: str) -> str:
    return f"dc:rl:{{{key}}}:{bucket.name}"


class Limiter:
    """Token buckets shared by every process using the same Redis. Holds no state: each
    decision is made inside Redis by one script run, so concurrent callers never overdraw."""

    def __init__(self, client: RedisClient) -> None:
        self._script = client.register_script(_SCRIPT)

    async def take(self, bucket: Bucket, key: str, cost: float = 1) -> Decision:
        """Takes `cost` tokens if they are all there, else nothing."""
        return await self.take_all([bucket], key, cost)

    async def take_all(self, buckets: Sequence[Bucket], key: str, cost: float = 1) -> Decision:
        """Takes `cost` tokens from every bucket of subject `key`, or from none of them."""
        too_small = [b.name for b in buckets if cost > b.capacity]
        if too_small:
            raise ValueError(f"cost {cost} exceeds the capacity of {too_small}: it never passes")
        return await self._run("take", buckets, key, cost)

    async def charge(self, bucket: Bucket, key: str, cost: float) -> Decision:
        """Takes `cost` tokens even if that leaves a debt; always allowed. A negative cost gives
        tokens back (a reservation that was larger than the use), up to the capacity."""
        return await self._run("charge", [bucket], key, cost)

    async def _run(self, mode: str, buckets: Sequence[Bucket], key: str, cost: float) -> Decision:
        names = [b.name for b in buckets]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need distinct buckets, got {names}")
        if cost < 0 and mode != "charge":
            raise ValueError(f"cost must not be negative: {cost}")
        args = [mode, repr(float(cost))]
        for b in buckets:
            args += [repr(float(b.capacity)), repr(float(b.refill_per_s))]
        keys = [bucket_key(b, key) for b in buckets]
        allowed, remaining, retry_after_ms = await self._script(keys=keys, args=args)
        return Decision(bool(allowed), float(remaining), int(retry_after_ms))
