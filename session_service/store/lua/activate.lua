#!lua flags=allow-oom
-- Activation: takes the session's lease and ownership (epoch + 1) and reads the session: its
-- snapshot (log/snapshot.py) and the log from the snapshot's window on, or the whole log.
-- allow-oom: at Redis's maxmemory a session still activates (a lease, the epoch: a few bytes),
-- so reads go on while writes are refused (footprint.py).
-- Atomic (one script): the snapshot and the entries are read at one instant, so they fit.
-- KEYS: meta, log, lease, snapshot. ARGV: now (ms), pod id, lease TTL (ms), use the snapshot
-- ('1') or read the whole log ('0'), a lease value that may be broken ('' none: the lease of a
-- pod evicted as gone, cluster/membership.py; fencing keeps that pod from writing again).
-- Returns {'HELD', lease value} (another pod holds the lease) or
-- {'OK', epoch, created, version, entries, base, snapshot}: the entries after seq `base`
-- through the end, and the snapshot's body ('' and base 0: no usable snapshot, the whole log).
local holder = redis.call('GET', KEYS[3])
if holder and string.match(holder, '^(.*):%d+$') ~= ARGV[2] and holder ~= ARGV[5] then
  return {'HELD', holder}
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('SET', KEYS[3], ARGV[2] .. ':' .. epoch, 'PX', ARGV[3])
redis.call('HSETNX', KEYS[1], 'created', ARGV[1])
redis.call('HSET', KEYS[1], 'accessed', ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'created', 'version')
local length = redis.call('LLEN', KEYS[2])
local snap = redis.call('HMGET', KEYS[4], 'seq', 'from', 'body')
local base = 0
local body = ''
-- A snapshot past the log's end cannot be of this log (a purge deletes both): not used.
if ARGV[4] == '1' and snap[1] and tonumber(snap[1]) <= length then
  base = tonumber(snap[2]) - 1
  body = snap[3]
end
local entries = redis.call('LRANGE', KEYS[2], base, -1)
if length > 0 and not redis.call('HGET', KEYS[1], 'lb') then  -- written before the count
  local all = entries
  if base > 0 then all = redis.call('LRANGE', KEYS[2], 0, -1) end
  local bytes = 0
  for _, e in ipairs(all) do bytes = bytes + #e end
  redis.call('HSET', KEYS[1], 'lb', bytes)
end
return {'OK', tostring(epoch), meta[1], meta[2] or '0', entries, tostring(base), body}
