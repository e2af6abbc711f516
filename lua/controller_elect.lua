-- controller_elect.lua — CONTROLLER_ELECT_MASTER (1002) and the controller's own elections,
-- as one compare-and-set: RocketMQ's ReplicasInfoManager#electMaster with DefaultElectPolicy.
--   first election of a group (masterEpoch 0): the requesting id, if registered, is master;
--   else candidates = live members of the sync-state set (all live replicas when unclean and
--   none of the set is alive); a live old master is kept (2011) unless another id is
--   designated; a designated id wins only if it is a candidate; otherwise the highest epoch,
--   then the highest maxOffset, then the lowest electionPriority (then the lowest id).
-- A new master gets masterEpoch+1 and syncStateSetEpoch+1 and the set {master}: an epoch is
-- handed out once, by the one script run that moved it. Nobody found: 2004 for a controller
-- election (the master is cleared and masterEpoch still grows), 2012 for a requested one.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name   ARGV[2]  requesting/designated broker id (-1 = none)
-- ARGV[3]  designate ('1' = ARGV[2] is an admin's designated id, '0' = not)
-- ARGV[4]  unclean ('1' = enableElectUncleanMaster)
-- ARGV[5]  expected masterEpoch (-1 = any): the compare of a controller-triggered election
-- ARGV[6]  expected dead master id (-1 = any): elect only if this id is still the master
--
-- Returns ctrl_reply JSON; code -1 ("stale") means the expectation failed and nothing changed.

local A = checker('controller_elect')
A.count(6)
local name = A.name(1, 'broker name')
local want = A.int(2, 'broker id', -1, MAX_SAFE_INT)
local designate = A.enum(3, 'designate', { '0', '1' }) == '1'
local unclean = A.enum(4, 'unclean', { '0', '1' }) == '1'
local expect_epoch = A.int(5, 'expected masterEpoch', -1, JAVA_INT_MAX)
local expect_dead = A.int(6, 'expected dead master id', -1, MAX_SAFE_INT)
if A.err then return A.err end

local g = ctrl_group(name)
if g == nil then return ctrl_reply(2010, "Broker hasn't been registered", name) end
if (expect_epoch >= 0 and g.mepoch ~= expect_epoch) or
   (expect_dead >= 0 and g.master ~= expect_dead) then
  return ctrl_reply(-1, 'stale: another election came first', name)
end

local function live_info(id)
  local key = k_ctrl_live(name, id)
  if redis.call('EXISTS', key) == 0 then return nil end
  local h = {}
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return { id = id, epoch = tonumber(h.epoch) or -1, max = h.max or '0', prio = tonumber(h.prio) or 0 }
end
local function candidates(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local info = live_info(id)
    if info then out[#out + 1] = info end
  end
  return out
end
local function better(a, b) -- a ranks before b
  if a.epoch ~= b.epoch then return a.epoch > b.epoch end
  if a.max ~= b.max then return long_lt(b.max, a.max) end
  if a.prio ~= b.prio then return a.prio < b.prio end
  return a.id < b.id
end
local assigned = designate and want or nil
if assigned == -1 then assigned = nil end
local function pick(cands)
  if #cands == 0 then return nil end
  local has = {}
  for _, c in ipairs(cands) do has[c.id] = true end
  if g.master and has[g.master] and (assigned == nil or assigned == g.master) then
    return g.master
  end
  if assigned ~= nil then return has[assigned] and assigned or nil end
  table.sort(cands, better)
  return cands[1].id
end

local new_master = nil
if g.mepoch == 0 and want >= 1 and g['addr:' .. string.format('%d', want)] then
  new_master = want
end
if new_master == nil then
  new_master = pick(candidates(g.ids))
  if new_master == nil and unclean then
    local all = {}
    for k, _ in pairs(g) do
      local id = string.match(k, '^addr:(%d+)$')
      if id then all[#all + 1] = tonumber(id) end
    end
    table.sort(all)
    new_master = pick(candidates(all))
  end
end

local gk = k_ctrl_group(name)
if new_master ~= nil and new_master == g.master then
  return ctrl_reply(2011, 'The old master ' .. string.format('%d', g.master) ..
    ' is still alive, not need to elect new master for broker ' .. name, name)
end
if new_master ~= nil then
  local sid = string.format('%d', new_master)
  redis.call('HSET', gk, 'master', sid, 'mepoch', g.mepoch + 1, 'sepoch', g.sepoch + 1,
    'sset', '[' .. sid .. ']')
  return ctrl_reply(0, '', name)
end
if want == -1 then
  redis.call('HSET', gk, 'master', '', 'mepoch', g.mepoch + 1)
  return ctrl_reply(2004, 'Old master has down and failed to elect a new broker master', name)
end
return ctrl_reply(2012, 'Failed to elect a new master', name)
