-- write_perm.lua — WIPE_WRITE_PERM_OF_BROKER / ADD_WRITE_PERM_OF_BROKER
-- (RouteInfoManager#operateWritePermOfBroker): for every topic with queue data of the broker,
-- 'wipe' clears the write bit of perm, 'add' sets perm to read|write (6).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  'wipe' or 'add'
--
-- Returns {topics of the broker (RocketMQ's wipeTopicCount / addTopicCount), routeVersion}.

local A = checker('write_perm')
A.count(2)
A.str(1, 'broker name')
local mode = A.enum(2, 'mode', { 'wipe', 'add' })
if A.err then return A.err end
local count = set_write_perm(ARGV[1], mode)
return { count, publish_changes(mode .. '_write_perm') }
