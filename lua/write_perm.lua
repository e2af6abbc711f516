-- write_perm.lua — WIPE_WRITE_PERM_OF_BROKER / ADD_WRITE_PERM_OF_BROKER
-- (RouteInfoManager#operateWritePermOfBroker): for every topic with queue data of the broker,
-- 'wipe' clears the write bit of perm, 'add' sets perm to read|write (6).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  'wipe' or 'add'
-- ARGV[3]  the most topics one script may handle (the stall budget's chunk, 1..10000): the
--          perms of a broker with more topics are rewritten by apply_pending.lua
--
-- Returns {topics of the broker (RocketMQ's wipeTopicCount / addTopicCount), routeVersion,
-- pending (1: the broker name has a chunked write to apply: run apply_pending.lua)}.

local A = checker('write_perm')
A.count(3)
A.str(1, 'broker name')
local mode = A.enum(2, 'mode', { 'wipe', 'add' })
CHUNK = A.int(3, 'chunk', 1, 10000)
if A.err then return A.err end
local count = set_write_perm(ARGV[1], mode)
return { count, publish_changes(mode .. '_write_perm'), pending_of(ARGV[1]) and 1 or 0 }
