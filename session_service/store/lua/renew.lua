#!lua flags=allow-oom
-- Extends a lease that is still ours. Run by EVAL in a pipeline (cluster pipelines refuse
-- EVALSHA). KEYS: lease. ARGV: our lease value (pod:epoch), TTL (ms). Returns 1 renewed, 0 not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
