-- heartbeat.lua — BROKER_HEARTBEAT: refresh a registered broker's liveness (key TTL, deadline
-- index and lastUpdateTimestamp). Nothing a route answer shows changes, so nothing is published.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address   ARGV[3]  now (ms)
--
-- Returns 1 if the broker is registered and was refreshed, 0 if it is unknown (or expired).

local A = checker('heartbeat')
A.count(3)
local cluster, addr = A.str(1, 'cluster name'), A.str(2, 'broker address')
local now = A.int(3, 'now', 0, MAX_SAFE_INT)
if A.err then return A.err end

return refresh_liveness(ident_of(cluster, addr), now) and 1 or 0
