-- Stores a session's snapshot (log/snapshot.py) for its current owner, if newer than the one
-- stored. Atomic (one script): a kill -9 of the owner leaves the old snapshot or the new one,
-- never a mix; either is true of the log (a snapshot at seq S depends on entries 1..S only).
-- KEYS: meta, log, snapshot, idem. ARGV: epoch, seq S, the first seq an activation loads, body
-- ('': delete the stored snapshot, one found not to match the log), then pairs of client id and
-- seq: client ids the log holds that the idem hash may lack (imported entries, logs older than
-- the hash), recorded with the first snapshot, so a windowed owner's idem check misses none.
-- Returns -1 (fenced: stale epoch), -2 (S is past the log's end: not this log), 0 (a snapshot
-- at S or later is stored already) or 1 (stored or deleted).
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -1 end
if ARGV[4] == '' then
  redis.call('DEL', KEYS[3])
  return 1
end
if tonumber(ARGV[2]) > redis.call('LLEN', KEYS[2]) then return -2 end
local stored = redis.call('HGET', KEYS[3], 'seq')
if stored and tonumber(stored) >= tonumber(ARGV[2]) then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[3], 'seq', ARGV[2], 'from', ARGV[3], 'body', ARGV[4])
return 1
