-- controller_clean.lua — CLEAN_BROKER_DATA (1011, mqadmin cleanBrokerMetadata): forget broker
-- ids of a group (or the whole group), refused (2009) while any of them is alive unless
-- isCleanLivingBroker. A group left without any id is removed with its liveness.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  ids: JSON array of broker ids ('[]' = the whole group)
-- ARGV[3]  clean living brokers ('1') or not ('0')
--
-- Returns ctrl_reply JSON: 0 or 2009 with nothing written.

local A = checker('controller_clean')
A.count(3)
local name = A.name(1, 'broker name')
local list = A.json(2, 'broker ids')
local living = A.enum(3, 'clean living', { '0', '1' }) == '1'
if not A.err then
  for _, v in ipairs(list) do
    if type(v) ~= 'number' or v < 0 or v > MAX_SAFE_INT or v ~= math.floor(v) then
      return redis.error_reply('ERR invalid argument: controller_clean ARGV[2] (broker ids) ' ..
        'must be an array of broker ids')
    end
  end
end
if A.err then return A.err end

local g = ctrl_group(name)
if g == nil then
  return ctrl_reply(2009, 'Broker ' .. name .. ' is not existed,clean broker data failure.', name)
end
local all = {}
for k, _ in pairs(g) do
  local id = string.match(k, '^addr:(%d+)$')
  if id then all[#all + 1] = tonumber(id) end
end
local ids = (#list == 0) and all or list
if not living then
  if #list == 0 and g.master ~= nil and ctrl_alive(name, g.master) then
    return ctrl_reply(2009, 'Broker ' .. name .. ' is still alive, clean up failure', name)
  end
  for _, id in ipairs(ids) do
    if ctrl_alive(name, id) then
      return ctrl_reply(2009, 'Broker [' .. name .. ',  ' .. string.format('%d', id) ..
        '] is still alive, clean up failure', name)
    end
  end
end

local gk = k_ctrl_group(name)
local drop = {}
for _, id in ipairs(ids) do
  local sid = string.format('%d', id)
  drop[id] = true
  redis.call('HDEL', gk, 'addr:' .. sid, 'code:' .. sid)
  redis.call('DEL', k_ctrl_live(name, id))
  redis.call('ZREM', K.ctrl_deadlines, ctrl_member(name, id))
end
local left = 0
for _, id in ipairs(all) do if not drop[id] then left = left + 1 end end
if left == 0 then
  redis.call('DEL', gk)
  redis.call('SREM', K.ctrl_groups, name)
  return ctrl_reply(0, '', name)
end
local keep = {}
for _, id in ipairs(g.ids) do if not drop[id] then keep[#keep + 1] = id end end
redis.call('HSET', gk, 'sset', ctrl_id_list(keep))
if g.master ~= nil and drop[g.master] then redis.call('HSET', gk, 'master', '') end
return ctrl_reply(0, '', name)
