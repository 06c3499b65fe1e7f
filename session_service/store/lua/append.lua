-- The owner's write of log entries (store/sessions.py `Store.append`): the core, then the
-- side effects the write carries. Built by store/append_call.py, which documents each field.
--
-- ARGV[1]: the request, a JSON object (cjson); ARGV[2..]: the entries, raw bytes.
-- KEYS: named by the request's `keys` list (KEYS[i] is the key named keys[i]), all on the
--   session's hash tag on a Redis Cluster (the cross-slot effects then follow the write):
--   meta, log, idem          the session's (always)
--   answer                   the batches of the answer this write ends
--   owned                    the claimant's owned set (a claim checked here: one Redis)
--   active:U pinned:U archived:U read:U    user U's thread index, per user in `index.users`
--   feed                     the search feed
--   purge                    the purge queue
-- Request fields (values as strings, as Redis stores them; an absent field: no such effect):
--   core: session (id), epoch, now (ms), version_increment; client_id (idempotency: a repeat
--     returns the first write's seq), expected_version (optimistic concurrency)
--   log_limit = {bytes, events}: refuse a write that would pass either (footprint.py)
--   claim = {owner, limit}: record the session's owner in meta; with `owned`, refuse when the
--     owner already has `limit` other sessions, else count this one
--   summary = {{field, value}, ...}: meta fields in order ('' deletes the field)
--   index = {score, message_count, users = {{user, op}, ...}}: the users' thread index
--   feed_maxlen: hint the search indexer (with `feed`), the stream trimmed to about this
--   purge: 'rem' takes the thread off the purge queue, else its purge time (ms) (with `purge`)
-- Returns {'OK', first seq, version} | {'DUPLICATE', seq} | {'FENCED', epoch}
--   | {'CONFLICT', version} | {'FULL', 'events' | 'bytes', stored} | {'SESSIONS'};
--   anything but OK and DUPLICATE stored nothing, DUPLICATE nothing new.
--#include index_user.lua
local req = cjson.decode(ARGV[1])
local key = {}
for i, name in ipairs(req.keys) do key[name] = KEYS[i] end
local sid = req.session

-- Core: fencing, idempotency, optimistic concurrency.
local epoch = redis.call('HGET', key.meta, 'epoch')
if epoch ~= req.epoch then return {'FENCED', epoch or '0'} end
if req.client_id then
  local seen = redis.call('HGET', key.idem, req.client_id)
  if seen then return {'DUPLICATE', seen} end
end
if req.expected_version then
  local version = redis.call('HGET', key.meta, 'version') or '0'
  if version ~= req.expected_version then return {'CONFLICT', version} end
end

-- Footprint: refusals, before anything is stored.
local n = #ARGV - 1
local adding = 0
for i = 2, n + 1 do adding = adding + #ARGV[i] end
if req.log_limit then
  local stored = redis.call('LLEN', key.log)
  if stored + n > tonumber(req.log_limit.events) then return {'FULL', 'events', tostring(stored)} end
  local bytes = tonumber(redis.call('HGET', key.meta, 'lb') or '0')
  if bytes + adding > tonumber(req.log_limit.bytes) then return {'FULL', 'bytes', tostring(bytes)} end
end
if key.owned and redis.call('SISMEMBER', key.owned, sid) == 0 then
  if redis.call('SCARD', key.owned) >= tonumber(req.claim.limit) then return {'SESSIONS'} end
  redis.call('SADD', key.owned, sid)
end
if req.claim then redis.call('HSET', key.meta, 'own', req.claim.owner) end

-- Core: seqs are the entries' positions in the log.
local first = 0
local last = 0
for i = 2, n + 1 do
  last = redis.call('RPUSH', key.log, ARGV[i])
  if first == 0 then first = last end
end
redis.call('HINCRBY', key.meta, 'lb', adding)
if req.client_id then redis.call('HSET', key.idem, req.client_id, first) end
if key.answer then redis.call('DEL', key.answer) end
local version = redis.call('HINCRBY', key.meta, 'version', req.version_increment)
redis.call('HSET', key.meta, 'accessed', req.now)

-- Side effects: the thread's summary and index, the search feed, the purge queue.
for _, pair in ipairs(req.summary or {}) do
  if pair[2] == '' then redis.call('HDEL', key.meta, pair[1])
  else redis.call('HSET', key.meta, pair[1], pair[2]) end
end
if req.index then
  for _, op in ipairs(req.index.users) do
    local user = op[1]
    local keys = {
      key['active:' .. user], key['pinned:' .. user], key['archived:' .. user], key['read:' .. user],
    }
    index_user(keys, sid, req.index.score, req.index.message_count, op[2])
  end
end
if key.feed then redis.call('XADD', key.feed, 'MAXLEN', '~', req.feed_maxlen, '*', 's', sid) end
if key.purge then
  if req.purge == 'rem' then redis.call('ZREM', key.purge, sid)
  else redis.call('ZADD', key.purge, req.purge, sid) end
end
return {'OK', tostring(first), tostring(version)}
