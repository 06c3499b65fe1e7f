-- Marks every message of a thread read for one user, if the thread is in their lists.
-- KEYS: the user's active, pinned, archived, read. ARGV: thread id, message count.
-- Returns the thread's section ('a', 'p', 'r') or '' when not the user's.
local sid = ARGV[1]
for k = 1, 3 do
  if redis.call('ZSCORE', KEYS[k], sid) then
    local read = tonumber(redis.call('HGET', KEYS[4], sid) or '0')
    if tonumber(ARGV[2]) > read then redis.call('HSET', KEYS[4], sid, ARGV[2]) end
    return ({'a', 'p', 'r'})[k]
  end
end
return ''
