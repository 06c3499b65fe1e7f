-- One user's thread index change outside the write's script (Redis Cluster: the user's keys
-- live on another slot than the session's; store/sessions.py `follow_up`).
-- KEYS: the user's active, pinned, archived, read (keys.thread_keys).
-- ARGV: thread id, score (last activity ms), message count, op ('t' | 'r' | 'x').
-- Returns 1.
--#include index_user.lua
index_user(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
