-- controller_alter_sync_state.lua — CONTROLLER_ALTER_SYNC_STATE_SET (1001): the master reports
-- a new sync-state set; a compare-and-set on master id, masterEpoch and syncStateSetEpoch.
-- Checks in RocketMQ's order: unknown group or unchanged set 2013; another master 2002;
-- masterEpoch 2000; syncStateSetEpoch 2001; unregistered member 2003; member not alive 2006;
-- a set without the master 2013. Success: the set, and syncStateSetEpoch + 1.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  master broker id   ARGV[3]  masterEpoch
-- ARGV[4]  syncStateSetEpoch the master holds   ARGV[5]  new set: JSON array of broker ids
--
-- Returns ctrl_reply JSON (with the group's state after the call).

local A = checker('controller_alter_sync_state')
A.count(5)
local name = A.name(1, 'broker name')
local master = A.int(2, 'master broker id', 0, MAX_SAFE_INT)
local mepoch = A.int(3, 'masterEpoch', JAVA_INT_MIN, JAVA_INT_MAX)
local sepoch = A.int(4, 'syncStateSetEpoch', JAVA_INT_MIN, JAVA_INT_MAX)
local set = A.json(5, 'sync-state set')
local ids = {}
if not A.err then
  local seen = {}
  for i, v in ipairs(set) do
    if type(v) ~= 'number' or v < 0 or v > MAX_SAFE_INT or v ~= math.floor(v) then
      return redis.error_reply('ERR invalid argument: controller_alter_sync_state ARGV[5] ' ..
        '(sync-state set) must be an array of broker ids')
    end
    if not seen[v] then seen[v] = true; ids[#ids + 1] = v end
  end
  if #ids == 0 or #ids ~= #set then
    return redis.error_reply('ERR invalid argument: controller_alter_sync_state ARGV[5] ' ..
      '(sync-state set) must be a non-empty array of distinct broker ids')
  end
  table.sort(ids)
end
if A.err then return A.err end

local g = ctrl_group(name)
if g == nil then return ctrl_reply(2013, 'Broker ' .. name .. ' is not existed', name) end
if ctrl_id_list(ids) == ctrl_id_list(g.ids) then
  return ctrl_reply(2013, 'The syncStateSet is the same as the old one, no needed to update', name)
end
if g.master ~= master then
  return ctrl_reply(2002, 'Rejecting alter syncStateSet request because the current leader is:{' ..
    (g.master and string.format('%d', g.master) or 'null') .. '}, not {' ..
    string.format('%d', master) .. '}', name)
end
if g.mepoch ~= mepoch then
  return ctrl_reply(2000, 'Rejecting alter syncStateSet request because the current master epoch is:{' ..
    g.mepoch .. '}, not {' .. mepoch .. '}', name)
end
if g.sepoch ~= sepoch then
  return ctrl_reply(2001, 'Rejecting alter syncStateSet request because the current syncStateSet epoch is:{' ..
    g.sepoch .. '}, not {' .. sepoch .. '}', name)
end
local has_master = false
for _, id in ipairs(ids) do
  local sid = string.format('%d', id)
  if g['addr:' .. sid] == nil then
    return ctrl_reply(2003, 'Rejecting alter syncStateSet request because the replicas {' ..
      sid .. "} don't exist", name)
  end
  if not ctrl_alive(name, id) then
    return ctrl_reply(2006, 'Rejecting alter syncStateSet request because the replicas {' ..
      sid .. '} is not alive', name)
  end
  if id == master then has_master = true end
end
if not has_master then
  return ctrl_reply(2013, 'Rejecting alter syncStateSet request because the newSyncStateSet ' ..
    "don't contains origin leader {" .. string.format('%d', master) .. '}', name)
end
redis.call('HSET', k_ctrl_group(name), 'sset', ctrl_id_list(ids), 'sepoch', g.sepoch + 1)
return ctrl_reply(0, '', name)
