-- query_data_version.lua — QUERY_DATA_VERSION: compare the broker's data version with the
-- stored one and refresh its liveness whatever the answer, as RocketMQ 5 does (4.9 refreshed
-- only when unchanged; 5.x brokers in acting-master mode send this request as their heartbeat).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address
-- ARGV[3]  the broker's data version, canonical JSON   ARGV[4]  now (ms)
-- ARGV[5]  heartbeat timeout (ms) and ARGV[6] connection id: used only when the liveness key
--          was evicted or deleted while the broker is still registered (then it is recreated,
--          without a data version: the answer is "changed" and the broker re-registers)
--
-- Returns {changed (1/0), stored data version JSON or '' when the broker is unknown,
--          refresh_liveness's status (0 unknown, 1 refreshed, 2 recreated)}.

local A = checker('query_data_version')
A.count(6)
local cluster, addr = A.str(1, 'cluster name'), A.str(2, 'broker address')
A.json(3, 'data version')
local now = A.int(4, 'now', 0, MAX_SAFE_INT)
local timeout = A.int(5, 'heartbeat timeout ms', HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
local conn = A.str(6, 'connection id')
if A.err then return A.err end

local stored = redis.call('HGET', k_live(ident_of(cluster, addr)), 'dv')
local refreshed = refresh_liveness(cluster, addr, now, timeout, conn)
if stored == ARGV[3] then return { 0, stored, refreshed } end
return { 1, stored or '', refreshed }
