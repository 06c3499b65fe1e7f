#!lua flags=allow-oom
-- A pod's heartbeat: (re)joins it with a TTL in Redis server time, records its presence token
-- (the connection whose closing means the pod is gone: store/presence.py; '' none) and drops
-- expired pods and expired gone marks.
-- KEYS: members, addrs, conns, gone (keys.py). ARGV: pod id, address, TTL (ms), presence token.
-- Returns 1.
-- allow-oom: at Redis's maxmemory pods stay members, so reads go on (footprint.py).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], pod)
  redis.call('HDEL', KEYS[3], pod)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
