#!lua flags=allow-oom
-- A pod's heartbeat: (re)joins it with a TTL in Redis server time and drops expired pods.
-- KEYS: members, addrs (keys.MEMBERS_KEY, keys.ADDRS_KEY). ARGV: pod id, address, TTL (ms).
-- Returns 1.
-- allow-oom: at Redis's maxmemory pods stay members, so reads go on (footprint.py).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], pod)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
