-- probe_expiry.lua — a short-lived probe key, written to find out (by observing it) whether
-- this Redis emits expired-key events to the pod's cleaner, and whether the pod's Redis user
-- may run scripts on the namespace's keys (namesrv_redis/store/capabilities.py). It touches no
-- route table and publishes nothing.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  probe name (the key is <prefix>probe:<name>)   ARGV[2]  time to live (ms, 1..60000)
--
-- Returns 1.

local A = checker('probe_expiry')
A.count(2)
local name = A.name(1, 'probe name')
local ttl = A.int(2, 'time to live', 1, 60000)
if A.err then return A.err end

local key = P .. 'probe:' .. name
redis.call('incr', key)
redis.call('pexpire', key, ttl)
return 1
