-- controller_apply_id.lua — CONTROLLER_APPLY_BROKER_ID (1013): a broker claims a controller id.
-- The first id of an unknown group must be 1 (it creates the group); a free id is taken; an id
-- already held with the same registerCheckCode succeeds again (an idempotent retry).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name   ARGV[2]  broker name   ARGV[3]  applied broker id (>= 1)
-- ARGV[4]  registerCheckCode "<brokerAddr>;<millis>" (the address is the part before ';')
--
-- Returns ctrl_reply JSON: code 0, or 2014 (BROKER_ID_INVALID) with nothing written.

local A = checker('controller_apply_id')
A.count(4)
local cluster, name = A.name(1, 'cluster name'), A.name(2, 'broker name')
local id = A.int(3, 'broker id', 1, MAX_SAFE_INT)
local code = A.name(4, 'registerCheckCode')
local addr = string.match(code, '^([^;]+);')
if not A.err and addr == nil then
  return redis.error_reply('ERR invalid argument: controller_apply_id ARGV[4] (registerCheckCode) ' ..
    'must be "<address>;<millis>"')
end
if A.err then return A.err end

local sid = string.format('%d', id)
local gk = k_ctrl_group(name)
local g = ctrl_group(name)
if g == nil then
  if id ~= 1 then
    return ctrl_reply(2014, 'Broker-set: ' .. name .. " hasn't been registered in controller, " ..
      'but broker try to apply brokerId: ' .. sid, name)
  end
  redis.call('HSET', gk, 'cluster', cluster, 'next', 2, 'master', '', 'mepoch', 0,
    'sset', '[]', 'sepoch', 0, 'addr:1', addr, 'code:1', code)
  redis.call('SADD', K.ctrl_groups, name)
  return ctrl_reply(0, '', name)
end
local held = g['code:' .. sid]
if held ~= nil and held ~= code then
  return ctrl_reply(2014, 'Fail to apply brokerId: ' .. sid .. ' in broker-set: ' .. name, name)
end
if held == nil then
  redis.call('HSET', gk, 'addr:' .. sid, addr, 'code:' .. sid, code)
  if id >= g.next then redis.call('HSET', gk, 'next', id + 1) end
end
return ctrl_reply(0, '', name)
