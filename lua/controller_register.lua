-- controller_register.lua — CONTROLLER_REGISTER_BROKER (1003): a broker with an applied id
-- registers at start-up; its address is updated when it changed.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  broker id (>= 1)   ARGV[3]  broker address
--
-- Returns ctrl_reply JSON: code 0 (with the group's state: the answer reports its master only
-- when master_alive), or 2010 (BROKER_NEED_TO_BE_REGISTERED) with nothing written.

local A = checker('controller_register')
A.count(3)
local name = A.name(1, 'broker name')
local id = A.int(2, 'broker id', 1, MAX_SAFE_INT)
local addr = A.name(3, 'broker address')
if A.err then return A.err end

local sid = string.format('%d', id)
local g = ctrl_group(name)
if g == nil or g['code:' .. sid] == nil then
  return ctrl_reply(2010, 'Broker-set: ' .. name .. ", brokerId: " .. sid ..
    " hasn't been registered in controller", name)
end
if g['addr:' .. sid] ~= addr then redis.call('HSET', k_ctrl_group(name), 'addr:' .. sid, addr) end
return ctrl_reply(0, '', name)
