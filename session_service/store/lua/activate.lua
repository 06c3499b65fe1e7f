#!lua flags=allow-oom
-- Activation: takes the session's lease and ownership (epoch + 1) and reads the session.
-- allow-oom: at Redis's maxmemory a session still activates (a lease, the epoch: a few bytes),
-- so reads go on while writes are refused (footprint.py).
-- KEYS: meta, log, lease. ARGV: now (ms), pod id, lease TTL (ms).
-- Returns {'HELD', lease value} (another pod holds the lease) or
-- {'OK', epoch, created, version, entries}.
local holder = redis.call('GET', KEYS[3])
if holder and string.match(holder, '^(.*):%d+$') ~= ARGV[2] then return {'HELD', holder} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('SET', KEYS[3], ARGV[2] .. ':' .. epoch, 'PX', ARGV[3])
redis.call('HSETNX', KEYS[1], 'created', ARGV[1])
redis.call('HSET', KEYS[1], 'accessed', ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'created', 'version')
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
if #entries > 0 and not redis.call('HGET', KEYS[1], 'lb') then  -- written before the count
  local bytes = 0
  for _, e in ipairs(entries) do bytes = bytes + #e end
  redis.call('HSET', KEYS[1], 'lb', bytes)
end
return {'OK', tostring(epoch), meta[1], meta[2] or '0', entries}
