-- controller_drop.lua — a controller-mode broker's heartbeat connection closed: its liveness
-- ends at once, but only if it still belongs to that connection (compare-and-delete: the
-- broker may already heartbeat through another pod).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  broker id (>= 0)   ARGV[3]  connection id
--
-- Returns 1 if the liveness was removed, 0 if it belonged elsewhere or was already gone.

local A = checker('controller_drop')
A.count(3)
local name = A.name(1, 'broker name')
local id = A.int(2, 'broker id', 0, MAX_SAFE_INT)
local conn = A.name(3, 'connection id')
if A.err then return A.err end

local key = k_ctrl_live(name, id)
if redis.call('HGET', key, 'conn') ~= conn then return 0 end
redis.call('DEL', key)
redis.call('ZREM', K.ctrl_deadlines, ctrl_member(name, id))
return 1
