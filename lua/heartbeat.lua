-- heartbeat.lua — BROKER_HEARTBEAT: refresh a registered broker's liveness (key TTL, deadline
-- index and lastUpdateTimestamp). Nothing a route answer shows changes, so nothing is published.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address   ARGV[3]  now (ms)
-- ARGV[4]  heartbeat timeout (ms) and ARGV[5] connection id: used only when the liveness key
--          was evicted or deleted while the broker is still registered (then it is recreated)
--
-- Returns 1 if the broker is registered and was refreshed, 2 if its liveness key had to be
-- recreated (see refresh_liveness), 0 if it is unknown (or expired).

local A = checker('heartbeat')
A.count(5)
local cluster, addr = A.str(1, 'cluster name'), A.str(2, 'broker address')
local now = A.int(3, 'now', 0, MAX_SAFE_INT)
local timeout = A.int(4, 'heartbeat timeout ms', HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
local conn = A.str(5, 'connection id')
if A.err then return A.err end

return refresh_liveness(cluster, addr, now, timeout, conn)
