-- A pod leaves the cluster on shutdown. KEYS: members, addrs, conns. ARGV: pod id. Returns 1.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
