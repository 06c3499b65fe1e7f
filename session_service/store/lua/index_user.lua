-- Included by append.lua and index_one.lua (`--#include`): one user's thread index change
-- (docs/threads.md, store/thread_index.py).
-- keys: the user's {active, pinned, archived, read} (keys.thread_keys); sid: the thread;
-- score: its last activity (ms); mc: its message count; op: 't' touch (into the active list
-- unless pinned or archived, scores only rise), 'r' touch and mark every message read,
-- 'x' remove (from every list, and the read mark).
local function index_user(keys, sid, score, mc, op)
  if op == 'x' then
    redis.call('ZREM', keys[1], sid)
    redis.call('ZREM', keys[2], sid)
    redis.call('ZREM', keys[3], sid)
    redis.call('HDEL', keys[4], sid)
    return
  end
  local placed = false
  for j = 1, 2 do
    if redis.call('ZSCORE', keys[1 + j], sid) then
      redis.call('ZADD', keys[1 + j], 'GT', score, sid)
      placed = true
    end
  end
  if not placed then redis.call('ZADD', keys[1], 'GT', score, sid) end
  if op == 'r' then
    local read = tonumber(redis.call('HGET', keys[4], sid) or '0')
    if tonumber(mc) > read then redis.call('HSET', keys[4], sid, mc) end
  end
end
