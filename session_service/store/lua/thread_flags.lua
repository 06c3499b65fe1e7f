-- Pins, unpins, archives or unarchives a thread in one user's lists (store/threads.py).
-- KEYS: the user's active, pinned, archived, read. ARGV: thread id, pinned ('1','0',''),
-- archived ('1','0',''; '' leaves a flag as it is).
-- Returns the thread's section after the change ('a', 'p', 'r') or '' when not the user's.
local sid = ARGV[1]
local where, score = nil, nil
for k = 1, 3 do
  local s = redis.call('ZSCORE', KEYS[k], sid)
  if s then where, score = k, s end
end
if not where then return '' end
local to = where
if ARGV[2] == '1' then to = 2
elseif ARGV[3] == '1' then to = 3
elseif (ARGV[2] == '0' and where == 2) or (ARGV[3] == '0' and where == 3) then to = 1 end
if to ~= where then
  redis.call('ZREM', KEYS[where], sid)
  redis.call('ZADD', KEYS[to], score, sid)
end
return ({'a', 'p', 'r'})[to]
