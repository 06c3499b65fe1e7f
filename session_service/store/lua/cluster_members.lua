-- The live pods (expiry after Redis's clock now) and the pods evicted as gone.
-- KEYS: members, addrs, conns, gone. ARGV: none.
-- Returns {{pod id, address, presence token, ...}, {gone pod id, ...}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  out[#out + 1] = pod
  out[#out + 1] = redis.call('HGET', KEYS[2], pod) or ''
  out[#out + 1] = redis.call('HGET', KEYS[3], pod) or ''
end
return {out, redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, '+inf')}
