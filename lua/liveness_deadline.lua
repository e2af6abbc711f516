-- liveness_deadline.lua — keep a re-applied registration from extending a silent broker's life.
-- A pod that re-applies its remembered registrations after Redis lost data gives each broker a
-- fresh heartbeat timeout; the broker may have fallen silent long before. This moves the
-- broker's deadline (liveness key TTL and deadline index) back to when the pod last heard from
-- it plus its timeout — only earlier, never later, and only while it is registered.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker address   ARGV[3]  now (ms)
-- ARGV[4]  the deadline (ms), > now: last heard from + heartbeat timeout
--
-- Returns 1 if the deadline was moved earlier, 0 otherwise (unknown broker, or already earlier).

local A = checker('liveness_deadline')
A.count(4)
local cluster, addr = A.str(1, 'cluster name'), A.str(2, 'broker address')
local now = A.int(3, 'now', 0, MAX_SAFE_INT)
A.int(4, 'deadline', (now or 0) + 1, MAX_SAFE_INT) -- later than now
local deadline = tonumber(ARGV[4])
if A.err then return A.err end

local ident = ident_of(cluster, addr)
local key = k_live(ident)
local current = redis.call('ZSCORE', K.deadlines, ident)
if redis.call('EXISTS', key) == 0 or not current or tonumber(current) <= deadline then return 0 end
redis.call('PEXPIRE', key, deadline - now)
redis.call('ZADD', K.deadlines, deadline, ident)
return 1
