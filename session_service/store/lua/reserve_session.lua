-- A claim's reservation on a Redis Cluster (on one Redis append.lua does this): counts the
-- session among its new owner's (MAX_SESSIONS_PER_USER, footprint.py).
-- KEYS: the user's owned set. ARGV: session id, limit. 1 reserved (or already counted), 0 full.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
