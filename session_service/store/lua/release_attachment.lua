-- Gives back a reservation of reserve_attachment.lua (the upload failed after it).
-- KEYS: the user's files hash, their byte total. ARGV: sha256. Returns 1 given back, 0 none.
local size = redis.call('HGET', KEYS[1], ARGV[1])
if not size then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DECRBY', KEYS[2], size)
return 1
