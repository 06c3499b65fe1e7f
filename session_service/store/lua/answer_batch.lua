-- Stores one delta batch of an open answer, only in order and only for the current owner.
-- KEYS: meta, the answer's batches (keys.answer_key). ARGV: epoch, batch offset, text.
-- Returns -1 (fenced: stale epoch), the number of batches stored before (not `offset`: out of
-- order, nothing stored) or the number after the push (offset + 1).
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -1 end
local stored = redis.call('LLEN', KEYS[2])
if stored ~= tonumber(ARGV[2]) then return stored end
return redis.call('RPUSH', KEYS[2], ARGV[3])
