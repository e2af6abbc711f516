-- register_broker.lua — REGISTER_BROKER: RouteInfoManager#registerBroker (RocketMQ 4.9 / 5.x).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name            ARGV[2]  broker address        ARGV[3]  broker name
-- ARGV[4]  broker id               ARGV[5]  HA server address ('' = none)
-- ARGV[6]  now (ms)                ARGV[7]  heartbeat timeout (ms): TTL of the liveness key
-- ARGV[8]  data version, canonical JSON (compared as a string: "changed" means not equal)
-- ARGV[9]  state version (RocketMQ 5; 0 when the broker sends none)
-- ARGV[10] owning connection id    ARGV[11] filter server list JSON, '-' when not sent
-- ARGV[12] zone name ('' = none)   ARGV[13] enableActingMaster: '' (4.x broker), 'true', 'false'
-- ARGV[14] '1' = deleteTopicWithBrokerRegistration
-- ARGV[15] '1' = the broker sent static-topic mappings (then nothing is deleted)
-- ARGV[16] mode: 'full' (topics follow) or 'lite' (no topics sent: only valid when the stored
--          data version equals ARGV[8]; otherwise nothing is written and 'need_topics' returned)
-- ARGV[17] N = number of topics;  then N groups of 5: topic, readQueueNums, writeQueueNums,
--          perm, topicSysFlag
--
-- Returns {status, masterAddr, masterHaAddr, topicsWritten, routeVersion}; status is
--   'ok'           registered;
--   'need_topics'  lite mode but the data version changed or the broker is new: resend full;
--   'refused'      first registration of this broker id listing exactly one topic (RocketMQ 5
--                  refuses it: "register broker failed");
--   'stale_state'  another address holds this broker id with a newer state version (5.x);
--                  nothing is written (RocketMQ would also drop this address's live info and
--                  its other ids; here a refused registration changes nothing at all).
-- Atomic and idempotent: running it twice equals once (the second run changes nothing).

local cluster, addr, name = ARGV[1], ARGV[2], ARGV[3]
local id = tonumber(ARGV[4])
local sid = string.format('%d', id)
local ha, now, timeout = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local dv, sv, conn, filters = ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
local zone, acting = ARGV[12], ARGV[13]
local delete_missing = ARGV[14] == '1' and ARGV[15] ~= '1'
local lite = ARGV[16] == 'lite'
local n = tonumber(ARGV[17])
local FIRST = 18

local ident = ident_of(cluster, addr)
local live_key = k_live(ident)

local bd = get_broker(name)
local register_first = bd == nil
if bd == nil then bd = { cluster = cluster, brokerName = name, brokerAddrs = {} } end
local before = encode_broker(bd)

local stored_dv = redis.call('HGET', live_key, 'dv')
local dv_changed = stored_dv ~= dv

-- Switch slave to master: the same address under another id is replaced.
for k, a in pairs(bd.brokerAddrs) do
  if a == addr and k ~= sid then bd.brokerAddrs[k] = nil end
end

-- RocketMQ 5: another address holding this id with a newer state version wins.
local old_addr = bd.brokerAddrs[sid]
if old_addr and old_addr ~= addr then
  local old_sv = redis.call('HGET', k_live(ident_of(cluster, old_addr)), 'sv')
  if old_sv and tonumber(old_sv) > sv then
    -- all or nothing: deleting this address's live info here would leave it in the group
    -- (under another id) with nothing left to ever expire it
    return { 'stale_state', '', '', 0, 0 }
  end
end

-- The same broker process registering under another broker name leaves its old group
-- (RocketMQ only notices when the connection closes; here the address is never orphaned).
local prev_name = redis.call('HGET', K.addr_names, ident)
local renamed = prev_name and prev_name ~= name

if lite and (register_first or old_addr ~= addr or dv_changed or renamed) then
  return { 'need_topics', '', '', 0, 0 }
end

-- RocketMQ 5: a broker id's first registration must be a full one.
if old_addr == nil and n == 1 then return { 'refused', '', '', 0, 0 } end

if renamed then
  remove_broker_process(cluster, addr, prev_name)
  dv_changed = true -- its data version described the old group's topics
end

bd.brokerAddrs[sid] = addr
register_first = register_first or old_addr == nil or old_addr == ''
if acting ~= '' then bd.enableActingMaster = (acting == 'true') end
if zone ~= '' then bd.zoneName = zone end

if redis.call('SADD', k_cluster(cluster), name) == 1 then touch_broker(name) end
redis.call('SADD', K.clusters, cluster)
local after = encode_broker(bd)
if after ~= before then
  redis.call('HSET', K.brokers, name, after)
  touch_broker(name)
end

-- Topic queue data: from the master, or from the prime slave (smallest id) of a 5.x group;
-- all of it when the data version changed (or first registration), otherwise (RocketMQ 5's
-- isTopicConfigChanged) only the topics holding no queue data of this broker yet, so that
-- split registrations (several requests with one data version) all land.
local is_master = id == 0
local is_prime_slave = acting ~= '' and not is_master and id == min_broker_id(bd)
local written = 0
local rewrite_all = dv_changed or register_first
if is_master or is_prime_slave then
  if delete_missing and rewrite_all then
    local reported = {}
    for i = 0, n - 1 do reported[ARGV[FIRST + i * 5]] = true end
    for _, t in ipairs(redis.call('SMEMBERS', k_broker_topics(name))) do
      if not reported[t] then drop_queue_data(t, name) end
    end
  end
  for i = 0, n - 1 do
    local base = FIRST + i * 5
    if rewrite_all or redis.call('HEXISTS', k_topic(ARGV[base]), name) == 0 then
      local perm = tonumber(ARGV[base + 3])
      -- only a group in acting-master mode shows its prime slave read-only (RocketMQ 5)
      if is_prime_slave and acting == 'true' then perm = without_write(perm) end
      local value = qd_format(tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), perm,
        tonumber(ARGV[base + 4]))
      if put_queue_data(ARGV[base], name, value) then written = written + 1 end
    end
  end
end

-- Live info: the liveness key itself, with the heartbeat timeout as TTL.
redis.call('HSET', live_key, 'name', name, 'id', sid, 'dv', dv, 'sv', sv, 'ha', ha,
  'last', now, 'timeout', timeout, 'conn', conn)
redis.call('PEXPIRE', live_key, timeout)
redis.call('ZADD', K.deadlines, now + timeout, ident)
redis.call('HSET', K.addr_names, ident, name)

if filters ~= '-' then
  if filters == '[]' then
    if redis.call('HDEL', K.filters, ident) == 1 then touch_broker(name) end
  elseif redis.call('HGET', K.filters, ident) ~= filters then
    redis.call('HSET', K.filters, ident, filters)
    touch_broker(name)
  end
end

-- A slave learns its master's address and HA address.
local master_addr, master_ha = '', ''
if not is_master then
  local m = bd.brokerAddrs['0']
  if m then
    local mha = redis.call('HGET', k_live(ident_of(cluster, m)), 'ha')
    if mha then master_addr, master_ha = m, mha end
  end
end

return { 'ok', master_addr, master_ha, written, publish_changes('register') }
