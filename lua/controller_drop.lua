-- controller_drop.lua — a controller-mode broker's heartbeat connection closed: the connection
-- leaves the liveness key, and the liveness ends at once when no other connection (another
-- pod: brokers heartbeat every controller address) still carries its heartbeats.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  broker id (>= 0)   ARGV[3]  connection id
--
-- Returns 1 if the liveness was removed, 0 if another connection still holds it or it was
-- already gone.

local A = checker('controller_drop')
A.count(3)
local name = A.name(1, 'broker name')
local id = A.int(2, 'broker id', 0, MAX_SAFE_INT)
local conn = A.name(3, 'connection id')
if A.err then return A.err end

local key = k_ctrl_live(name, id)
if redis.call('HDEL', key, 'c:' .. conn) == 0 then return 0 end
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 2) == 'c:' then return 0 end
end
redis.call('DEL', key)
redis.call('ZREM', K.ctrl_deadlines, ctrl_member(name, id))
return 1
