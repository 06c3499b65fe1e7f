-- Counts an uploaded file in its uploader's total (MAX_ATTACHMENT_BYTES_PER_USER, footprint.py).
-- KEYS: the user's files hash, their byte total. ARGV: sha256, size, limit.
-- Returns {1, used} reserved, {2, used} already counted, {0, used} full.
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {2, used} end
if used + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {0, used} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, redis.call('INCRBY', KEYS[2], ARGV[2])}
