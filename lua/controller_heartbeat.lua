-- controller_heartbeat.lua — BROKER_HEARTBEAT (904) of a controller-mode broker: its liveness
-- key (TTL = heartbeatTimeoutMills) and its deadline in the sweeper's index, with the numbers
-- the election policy ranks candidates by. Only the TTL decides that a broker is dead; the
-- deadline (the pod's clock) only says when the sweeper looks again.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker name   ARGV[3]  broker id (>= 0)
-- ARGV[4]  broker address   ARGV[5]  epoch (int, -1 = no role yet)   ARGV[6]  maxOffset (long)
-- ARGV[7]  confirmOffset (long)   ARGV[8]  heartbeat timeout (ms)   ARGV[9]  electionPriority
-- ARGV[10] connection id: a broker heartbeats every controller address (every pod), so the
--          key holds one field c:<connection id> per connection it came on
-- ARGV[11] now (ms)
--
-- Returns 1 when the broker id was not alive before this heartbeat, else 0.

local A = checker('controller_heartbeat')
A.count(11)
local cluster, name = A.name(1, 'cluster name'), A.name(2, 'broker name')
local id = A.int(3, 'broker id', 0, MAX_SAFE_INT)
local addr = A.name(4, 'broker address')
local epoch = A.int(5, 'epoch', -1, JAVA_INT_MAX)
local max_offset, confirm_offset = A.long(6, 'maxOffset'), A.long(7, 'confirmOffset')
local timeout = A.int(8, 'heartbeat timeout', HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
local prio = A.int(9, 'electionPriority', JAVA_INT_MIN, JAVA_INT_MAX)
local conn = A.name(10, 'connection id')
local now = A.int(11, 'now', 0, MAX_SAFE_INT)
if A.err then return A.err end

local key = k_ctrl_live(name, id)
local was = redis.call('EXISTS', key)
redis.call('HSET', key, 'addr', addr, 'cluster', cluster, 'epoch', epoch, 'max', max_offset,
  'confirm', confirm_offset, 'prio', prio, 'c:' .. conn, 1)
redis.call('PEXPIRE', key, timeout)
redis.call('ZADD', K.ctrl_deadlines, now + timeout, ctrl_member(name, id))
return was == 1 and 0 or 1
