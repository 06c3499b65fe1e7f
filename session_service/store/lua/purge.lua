-- Purges one deleted thread (features/threads/purge.py) if it is still deleted, its purge
-- time has come and no pod holds its lease: deletes its meta (all but the epoch, so any owner
-- that still has it in memory stays fenced), log, idem and snapshot keys.
-- KEYS: meta, log, idem, lease, snapshot. ARGV: now (ms).
-- Returns {1, owner} purged, {0} not deleted (any more), {-1} not yet.
local due = redis.call('HGET', KEYS[1], 'pg')
if not due then return {0} end
if tonumber(due) > tonumber(ARGV[1]) or redis.call('EXISTS', KEYS[4]) == 1 then return {-1} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local owner = redis.call('HGET', KEYS[1], 'own') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
if epoch then redis.call('HSET', KEYS[1], 'epoch', epoch) end
return {1, owner}
