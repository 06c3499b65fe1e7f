-- Evicts a pod whose presence connection closed (cluster/membership.py), unless it registered
-- another connection meanwhile: it leaves the member set and is marked gone until a lease TTL
-- from now, so pods may break its leases at once (registry.py).
-- KEYS: members, addrs, conns, gone. ARGV: pod id, its closed presence token, lease TTL (ms).
-- Returns 1 evicted, 0 not (its token changed or it is not a member).
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[1])
return 1
