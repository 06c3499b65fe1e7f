#!lua flags=allow-oom
-- Passivation: gives the lease up (if still ours) and records the last access.
-- KEYS: meta, lease. ARGV: our lease value (pod:epoch), epoch, accessed (ms).
-- Returns 1, or 0 when another owner's epoch is there (then `accessed` is left alone).
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'accessed', ARGV[3])
return 1
