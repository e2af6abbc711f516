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
-- ARGV[16] mode: 'full' — every topic of the body follows;
--               'lite' — no topics sent: only valid while the stored data version equals ARGV[8];
--               'diff' — only the topics that differ from the table whose token is ARGV[18]
--                        (none left it, or none is deleted: the topics a body stops listing
--                        are only deleted by a full registration): valid only while the
--                        broker name's stored table token is ARGV[18], or already ARGV[17];
--          an invalid lite or diff request writes nothing and returns 'need_topics'.
-- ARGV[17] token of this body's topic table ('' = none): stored per broker name in K.tables
--          (prefixed with the broker id and delete mode) when the queue data equals the table
-- ARGV[18] diff mode: the token of the table the diff was computed against
-- ARGV[19] KV namespace whose table to return (RocketMQ's ORDER_TOPIC_CONFIG, sent back to the
--          broker when returnOrderTopicConfigToBroker); '' = none
-- ARGV[20] N = number of topics;  then N groups of 5: topic, readQueueNums, writeQueueNums,
--          perm, topicSysFlag — or, for a table too big for one script, '@stage', generation,
--          bucket count: the N topics were staged by stage_topics.lua (_common.lua, "chunked
--          writes"); their queue data is then committed as a pending record that readers see
--          whole at once and apply_pending.lua applies in steps
-- last     the most topics one script may handle (the stall budget's chunk, 1..10000): a
--          renamed broker's old group with more topics is removed in chunks
--
-- Returns {status, masterAddr, masterHaAddr, topicsWritten, routeVersion, kvTable}: kvTable is
-- the flat HGETALL of ARGV[19]'s table, or 0 when that namespace does not exist; status is
--   'ok'           registered;
--   'need_topics'  lite/diff mode does not apply (data version or table token moved, new
--                  broker, renamed, …): nothing written, resend in full mode;
--   'refused'      first registration of this broker id listing exactly one topic (RocketMQ 5
--                  refuses it: "register broker failed");
--   'pending'      a chunked write of this broker name is still being applied: nothing
--                  written; run apply_pending.lua to its end, then send this again;
--   'stale_state'  another address holds this broker id with a newer state version (5.x);
--                  nothing is written (RocketMQ would also drop this address's live info and
--                  its other ids; here a refused registration changes nothing at all).
-- Atomic and idempotent: running it twice equals once (the second run changes nothing).

-- Every argument is checked before the first write (a script error would not roll back).
local A = checker('register_broker')
local cluster, addr, name = A.name(1, 'cluster name'), A.name(2, 'broker address'),
  A.name(3, 'broker name')
local sid = A.long(4, 'broker id')
local ha = A.str(5, 'HA server address')
local now = A.int(6, 'now', 0, MAX_SAFE_INT)
local timeout = A.int(7, 'heartbeat timeout ms', HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
local dv = A.str(8, 'data version')
A.json(8, 'data version')
local sv = A.long(9, 'state version')
local conn = A.str(10, 'connection id')
local filters = A.str(11, 'filter server list')
A.json(11, 'filter server list', '-')
local zone = A.str(12, 'zone name')
local acting = A.enum(13, 'enableActingMaster', { '', 'true', 'false' })
local delete_mode = A.enum(14, 'delete mode', { '0', '1' })
local static_mappings = A.enum(15, 'static topic mappings', { '0', '1' })
local delete_missing = delete_mode == '1' and static_mappings ~= '1'
local mode = A.enum(16, 'mode', { 'full', 'lite', 'diff' })
A.str(17, 'table token'); A.str(18, 'base table token'); A.str(19, 'KV namespace')
local n = A.int(20, 'topic count', 0, MAX_SAFE_INT)
local FIRST = 21
local staged = ARGV[FIRST] == '@stage' and #ARGV == FIRST + 3
local gen, buckets = '', 0
if staged then
  gen = A.name(FIRST + 1, 'stage generation')
  buckets = A.int(FIRST + 2, 'stage bucket count', 1, 100000)
  CHUNK = A.int(FIRST + 3, 'chunk', 1, 10000)
elseif not A.err then
  A.count(FIRST + 5 * n)
  if not A.err then CHUNK = A.int(FIRST + 5 * n, 'chunk', 1, 10000) end
end
if not staged then A.queue_config_groups(FIRST, n, 'topic') end
if A.err then return A.err end
if staged then -- every staged topic must be there (a stage key expired: stage it again)
  local total = 0
  for i = 0, buckets - 1 do total = total + redis.call('HLEN', k_stage(gen, i)) end
  if total ~= n then
    return redis.error_reply('ERR stage incomplete: register_broker found ' .. total ..
      ' of ' .. n .. ' staged topics of generation ' .. gen)
  end
end

local ident = ident_of(cluster, addr)
local live_key = k_live(ident)

-- Every answer has the same shape; a refusal writes nothing.
local function refuse(status) return { status, '', '', 0, 0, 0 } end

if pending_of(name) then return refuse('pending') end

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
  if old_sv and canonical_int(old_sv) and long_lt(sv, old_sv) then
    -- all or nothing: deleting this address's live info here would leave it in the group
    -- (under another id) with nothing left to ever expire it
    return refuse('stale_state')
  end
end

-- The same broker process registering under another broker name leaves its old group
-- (RocketMQ only notices when the connection closes; here the address is never orphaned).
local prev_name = redis.call('HGET', K.addr_names, ident)
local renamed = prev_name and prev_name ~= name

if mode ~= 'full' and (register_first or old_addr ~= addr or renamed) then
  return refuse('need_topics')
end
-- Topic queue data comes from the master, or from the prime slave (smallest id) of a 5.x group.
local is_master = sid == '0'
local min_id = min_broker_id(bd) -- of the group without this id, if it is new
local is_prime_slave = acting ~= '' and not is_master and (min_id == nil or not long_lt(min_id, sid))
local writes_topics = is_master or is_prime_slave

-- The table token: which body (and which writer, and delete mode) the stored queue data of
-- this broker name equals.
local function table_token(t) return sid .. (delete_missing and ':d:' or ':k:') .. t end
local stored_token = redis.call('HGET', K.tables, name)
local already_applied = ARGV[17] ~= '' and stored_token == table_token(ARGV[17])
-- lite: nothing to write only if the data version is the stored one and (for a topic writer)
-- the stored table is this very body's (a deleted topic or a wiped perm must be restored)
if mode == 'lite' and (dv_changed or (writes_topics and not already_applied)) then
  return refuse('need_topics')
end
if mode == 'diff' and writes_topics and not already_applied and
    (not dv_changed or ARGV[18] == '' or stored_token ~= table_token(ARGV[18])) then
  return refuse('need_topics')
end

-- RocketMQ 5: a broker id's first registration must be a full one.
if old_addr == nil and n == 1 then return refuse('refused') end

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

-- Topic queue data: all of it when the data version changed (or first registration),
-- otherwise (RocketMQ 5's isTopicConfigChanged) only the topics holding no queue data of this
-- broker yet, so that split registrations (several requests with one data version) all land.
-- A diff carries only the topics that changed; a body whose table is already stored, none.
local written = 0
local rewrite_all = dv_changed or register_first
if staged and writes_topics and mode ~= 'lite' and not already_applied then
  -- readers see the whole table from now on (route.lua); apply_pending.lua writes it
  redis.call('HDEL', K.tables, name)
  forgotten[name] = true
  -- the stage now belongs to the record: it lives until apply_pending.lua deletes it
  for i = 0, buckets - 1 do redis.call('PERSIST', k_stage(gen, i)) end
  save_pending(name, { kind = 'put', gen = gen, buckets = buckets, n = n, phase = 'put',
    next = 0, cursor = '0', rewrite = rewrite_all,
    delete = delete_missing and rewrite_all and mode == 'full', dm = delete_missing,
    ro = is_prime_slave and acting == 'true',
    token = (ARGV[17] ~= '' and (rewrite_all or mode == 'full')) and table_token(ARGV[17]) or '',
    matches = true, forgot = false, written = 0 })
  touch_all()
elseif staged then -- nothing of the table to write: the stage goes (UNLINK frees it aside)
  for i = 0, buckets - 1 do redis.call('UNLINK', k_stage(gen, i)) end
elseif writes_topics and mode ~= 'lite' and not already_applied then
  if delete_missing and rewrite_all and mode == 'full' then
    local reported = {}
    for i = 0, n - 1 do reported[ARGV[FIRST + i * 5]] = true end
    for _, t in ipairs(redis.call('SMEMBERS', k_broker_topics(name))) do
      if not reported[t] then drop_queue_data(t, name) end
    end
  end
  local matches = true -- every topic sent already holds exactly this queue data
  for i = 0, n - 1 do
    local base = FIRST + i * 5
    local perm = tonumber(ARGV[base + 3])
    -- only a group in acting-master mode shows its prime slave read-only (RocketMQ 5)
    if is_prime_slave and acting == 'true' then perm = without_write(perm) end
    local value = qd_format(tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), perm,
      tonumber(ARGV[base + 4]))
    if rewrite_all then
      if put_queue_data(ARGV[base], name, value) then written = written + 1 end
    else
      local stored = redis.call('HGET', k_topic(ARGV[base]), name)
      if not stored then
        put_queue_data(ARGV[base], name, value)
        written = written + 1
      elseif stored ~= value then
        matches = false
      end
    end
  end
  -- The stored queue data now equals the body's table: after a full rewrite (topics it does not
  -- list stay only when not deleting, which the token's delete mode records), after a diff on
  -- top of the table it was computed against, or when it already did (then a lite re-register
  -- becomes possible again, e.g. after an upgrade).
  if ARGV[17] ~= '' and (rewrite_all or (mode == 'full' and matches and
      (not delete_missing or redis.call('SCARD', k_broker_topics(name)) == n))) then
    redis.call('HSET', K.tables, name, table_token(ARGV[17]))
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

local kv_table = 0
if ARGV[19] ~= '' and redis.call('SISMEMBER', K.kvns, ARGV[19]) == 1 then
  kv_table = redis.call('HGETALL', k_kv(ARGV[19]))
end

return { 'ok', master_addr, master_ha, written, publish_changes('register'), kv_table }
