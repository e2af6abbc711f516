-- query_data_version.lua — QUERY_DATA_VERSION: compare the broker's data version with the
-- stored one and refresh its liveness whatever the answer, as RocketMQ 5 does (4.9 refreshed
-- only when unchanged; 5.x brokers in acting-master mode send this request as their heartbeat).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address
-- ARGV[3]  the broker's data version, canonical JSON   ARGV[4]  now (ms)
--
-- Returns {changed (1/0), stored data version JSON or '' when the broker is unknown}.

local A = checker('query_data_version')
A.count(4)
local cluster, addr = A.str(1, 'cluster name'), A.str(2, 'broker address')
A.json(3, 'data version')
local now = A.int(4, 'now', 0, MAX_SAFE_INT)
if A.err then return A.err end

local ident = ident_of(cluster, addr)
local stored = redis.call('HGET', k_live(ident), 'dv')
refresh_liveness(ident, now)
if stored == ARGV[3] then return { 0, stored } end
return { 1, stored or '' }
