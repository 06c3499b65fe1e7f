-- The live pods (expiry after Redis's clock now).
-- KEYS: members, addrs. ARGV: none. Returns {pod id, address, pod id, address, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  out[#out + 1] = pod
  out[#out + 1] = redis.call('HGET', KEYS[2], pod) or ''
end
return out
