-- heartbeat.lua — BROKER_HEARTBEAT: refresh a registered broker's liveness (key TTL, deadline
-- index and lastUpdateTimestamp). Nothing a route answer shows changes, so nothing is published.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address   ARGV[3]  now (ms)
--
-- Returns 1 if the broker is registered and was refreshed, 0 if it is unknown (or expired).

return refresh_liveness(ident_of(ARGV[1], ARGV[2]), tonumber(ARGV[3])) and 1 or 0
