-- _common.lua — helpers prepended to every script in lua/ by namesrv_redis/scripts.py.
--
-- KEYS[1] is the namespace prefix "nsr:{<ns>}:". Every other key is derived from it exactly as
-- namesrv_redis/keys.py documents, so all keys share one hash tag (one Cluster slot).
-- Everything non-deterministic (time, TTLs, options) comes in ARGV; replies are integers and
-- strings only. Scripts note what a route answer would see changing (touch_topic/touch_broker)
-- and end with publish_changes(kind), which bumps the route version and publishes one event.

local P = KEYS[1]
local K = {
  version = P .. 'version',
  clusters = P .. 'clusters',
  brokers = P .. 'brokers',
  topics = P .. 'topics',
  deadlines = P .. 'deadlines',
  addr_names = P .. 'addr-names',
  filters = P .. 'filters',
  kvns = P .. 'kvns',
  kvns_emptied = P .. 'kvns-emptied',
  config = P .. 'config',
  events = P .. 'events',
  tables = P .. 'tables',
  pending = P .. 'pending',
}
local function k_cluster(c) return P .. 'cluster:' .. c end
local function k_topic(t) return P .. 'topic:' .. t end
local function k_broker_topics(b) return P .. 'broker-topics:' .. b end
local function k_live(ident) return P .. 'live:' .. ident end
local function k_kv(ns) return P .. 'kv:' .. ns end
local function k_stage(gen, i) return P .. 'stage:' .. gen .. ':' .. i end
-- A broker process's identity: cluster@addr with '%' and '@' escaped in both parts (%25, %40),
-- so it splits at its only '@' whatever bytes the names hold (namesrv_redis/store/keys.py).
local IDENT_ESCAPES = { ['%'] = '%25', ['@'] = '%40' }
local function ident_part(s) return (string.gsub(s, '[%%@]', IDENT_ESCAPES)) end
local function ident_of(cluster, addr) return ident_part(cluster) .. '@' .. ident_part(addr) end

local PERM_WRITE = 2
local PERM_READ = 4

-- ---------------------------------------------------------------- argument checks
-- A script error does not roll back what the script already wrote, so every script checks all
-- of its ARGV with a checker before its first write and returns the first error found:
--   local A = checker('heartbeat'); A.count(3); local c = A.name(1, 'cluster name'); …
--   if A.err then return A.err end
-- Limits are the ones namesrv_redis/rocketmq/bounds.py documents (the pod refuses first, with a clear
-- answer; this is the last line of defence against any caller).
local JAVA_INT_MIN, JAVA_INT_MAX = -2147483648, 2147483647
local MAX_SAFE_INT = 9007199254740991 -- 2^53 - 1: larger integers are inexact as Lua numbers
local HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX = 100, 604800000
local LONG_MAX_DIGITS, LONG_MIN_DIGITS = '9223372036854775807', '9223372036854775808'

-- canonical decimal integer text: '0', or an optional '-' then digits without a leading zero
local function canonical_int(s) return s == '0' or string.match(s, '^%-?[1-9]%d*$') ~= nil end
local function fits_long(s)
  local neg = string.sub(s, 1, 1) == '-'
  local digits = neg and string.sub(s, 2) or s
  if #digits ~= 19 then return #digits < 19 end
  return digits <= (neg and LONG_MIN_DIGITS or LONG_MAX_DIGITS)
end
-- a < b for canonical integer texts of any size (Java longs stay exact: no Lua numbers)
local function long_lt(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a < b
end

local function checker(script)
  local A = { err = nil }
  local function fail(i, what, why)
    if not A.err then
      A.err = redis.error_reply('ERR invalid argument: ' .. script .. ' ARGV[' .. i .. '] (' ..
        what .. ') ' .. why)
    end
  end
  local function present(i, what)
    if ARGV[i] == nil then fail(i, what, 'is missing'); return false end
    return true
  end
  function A.count(n)
    if #ARGV ~= n then fail(#ARGV, 'argument count', 'is ' .. #ARGV .. ', expected ' .. n) end
  end
  function A.str(i, what)
    if not present(i, what) then return '' end
    return ARGV[i]
  end
  function A.name(i, what) -- a non-empty string
    if not present(i, what) then return '' end
    if ARGV[i] == '' then fail(i, what, 'is empty') end
    return ARGV[i]
  end
  function A.int(i, what, lo, hi) -- an integer in [lo, hi] (|lo|, |hi| <= 2^53 - 1)
    if not present(i, what) then return 0 end
    local s = ARGV[i]
    local v = canonical_int(s) and #s <= 17 and tonumber(s) or nil
    if v == nil or v < lo or v > hi then
      fail(i, what, 'must be an integer in [' .. string.format('%d', lo) .. ', ' ..
        string.format('%d', hi) .. ']')
      return 0
    end
    return v
  end
  function A.long(i, what) -- a Java long, kept as its canonical text
    if not present(i, what) then return '0' end
    if not (canonical_int(ARGV[i]) and fits_long(ARGV[i])) then
      fail(i, what, "must be an integer within Java's long")
      return '0'
    end
    return ARGV[i]
  end
  function A.enum(i, what, allowed)
    if not present(i, what) then return '' end
    for _, a in ipairs(allowed) do if ARGV[i] == a then return a end end
    fail(i, what, 'must be one of ' .. table.concat(allowed, '|'))
    return ''
  end
  function A.json(i, what, except) -- JSON text of an object or array (or the value `except`)
    if not present(i, what) then return nil end
    if except ~= nil and ARGV[i] == except then return nil end
    local ok, v = pcall(cjson.decode, ARGV[i])
    if not ok or type(v) ~= 'table' then fail(i, what, 'must be a JSON object or array') end
    return v
  end
  -- n groups of 5 from ARGV[first]: a name (`what`: topic or broker name), readQueueNums,
  -- writeQueueNums, perm, topicSysFlag
  function A.queue_config_groups(first, n, what)
    for i = 0, n - 1 do
      if A.err then return end
      local base = first + i * 5
      A.name(base, what)
      A.int(base + 1, 'readQueueNums', JAVA_INT_MIN, JAVA_INT_MAX)
      A.int(base + 2, 'writeQueueNums', JAVA_INT_MIN, JAVA_INT_MAX)
      A.int(base + 3, 'perm', JAVA_INT_MIN, JAVA_INT_MAX)
      A.int(base + 4, 'topicSysFlag', JAVA_INT_MIN, JAVA_INT_MAX)
    end
  end
  function A.queue_configs(first, n) -- the groups of topics ending the arguments
    if not A.err then A.count(first - 1 + 5 * n) end
    A.queue_config_groups(first, n, 'topic')
  end
  return A
end

-- ---------------------------------------------------------------- change tracking / events
local changed = { topics = {}, brokers = {}, n = 0, all = false }
local function touch_topic(t)
  if not changed.topics[t] then changed.topics[t] = true; changed.n = changed.n + 1 end
end
local function touch_broker(b)
  if not changed.brokers[b] then changed.brokers[b] = true; changed.n = changed.n + 1 end
end
local function touch_all() changed.all = true end

local function json_string_list(set)
  local out = {}
  for s, _ in pairs(set) do out[#out + 1] = cjson.encode(s) end
  table.sort(out)
  return '[' .. table.concat(out, ',') .. ']'
end

local MAX_EVENT_ITEMS = 500
-- Bump the route version and publish what changed; returns the new version, or 0 if nothing did.
local function publish_changes(kind)
  if changed.n == 0 and not changed.all then return 0 end
  local v = redis.call('INCR', K.version)
  local msg
  if changed.all or changed.n > MAX_EVENT_ITEMS then
    msg = '{"v":' .. v .. ',"kind":' .. cjson.encode(kind) .. ',"all":true}'
  else
    msg = '{"v":' .. v .. ',"kind":' .. cjson.encode(kind) .. ',"topics":' ..
      json_string_list(changed.topics) .. ',"brokers":' .. json_string_list(changed.brokers) .. '}'
  end
  redis.call('PUBLISH', K.events, msg)
  return v
end

-- ---------------------------------------------------------------- queue data "r,w,perm,sysflag"
local function qd_format(r, w, perm, flag)
  return string.format('%d,%d,%d,%d', r, w, perm, flag)
end
local function qd_parse(s)
  local r, w, perm, flag = string.match(s, '^(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+)$')
  return tonumber(r), tonumber(w), tonumber(perm), tonumber(flag)
end
local function without_write(perm)
  if math.floor(perm / PERM_WRITE) % 2 == 1 then return perm - PERM_WRITE end
  return perm
end

-- ---------------------------------------------------------------- chunked writes (stall budget)
-- A registration or removal too big for one short script is applied in chunks (docs/liveness.md,
-- "Big brokers"). Its topics are first staged in K.stage(gen, i) hashes (stage_topics.lua,
-- invisible to readers); one short script commits it (register_broker.lua, or the removal in
-- remove_broker_process) by writing a record to K.pending (broker name -> JSON); from then on
-- route.lua shows that broker's queue data as the record says (overlay), and apply_pending.lua
-- moves it into the topic hashes one bounded step at a time, deleting the record at the end.
-- A record is rolled forward by whoever finds it: the pod that wrote it, the next write of
-- that broker name (which is refused with 'pending' until then), or any pod's sweeper.
--   put:  {kind, gen, buckets, n, phase 'put'|'sweep'|'clean', next, cursor, rewrite, delete,
--          ro, token, matches, forgot, written}
--   drop: {kind, gen ('' or the superseded put's), buckets, phase 'drop'|'clean', next}
--   perm: {kind, mode 'wipe'|'add', phase 'perm', cursor, changed}
local CHUNK = 2500 -- the most topics one script handles; scripts set it from their ARGV

-- Which stage bucket of `buckets` holds a topic: its bytes as a big-endian number mod 2^31 - 1,
-- mod buckets (namesrv_redis/store/keys.py stage_bucket; every step stays below 2^53).
local function stage_bucket(topic, buckets)
  local h = 0
  for i = 1, #topic do h = (h * 256 + string.byte(topic, i)) % 2147483647 end
  return h % buckets
end

-- A record that is not a JSON object (an operator's edit) counts as absent: it must not make
-- every route read or registration of that broker fail; apply_pending.lua deletes it.
local function decode_pending(s)
  local ok, rec = pcall(cjson.decode, s)
  if ok and type(rec) == 'table' and (rec.kind == 'put' or rec.kind == 'drop' or
      rec.kind == 'perm') then return rec end
  return false
end
local pending_seen = {}
local function pending_of(broker_name) -- the decoded record, or false
  local p = pending_seen[broker_name]
  if p == nil then
    local s = redis.call('HGET', K.pending, broker_name)
    p = s and decode_pending(s) or false
    pending_seen[broker_name] = p
  end
  return p
end
local function save_pending(broker_name, rec)
  pending_seen[broker_name] = rec
  redis.call('HSET', K.pending, broker_name, cjson.encode(rec))
end
local function staged_value(rec, topic) -- a staged put's raw queue data of topic, or false
  if rec.phase == 'clean' then return false end
  return redis.call('HGET', k_stage(rec.gen, stage_bucket(topic, rec.buckets)), topic) or false
end
-- Another write changes a broker's queue data of a topic while a staged put is pending: the
-- staged value must not overwrite it later. True when a staged value was dropped.
local function unstage(topic, broker_name)
  local rec = pending_of(broker_name)
  if rec and rec.kind == 'put' and rec.phase ~= 'clean' then
    return redis.call('HDEL', k_stage(rec.gen, stage_bucket(topic, rec.buckets)), topic) == 1
  end
  return false
end
-- Broker names with a pending chunked write (their queue data may not be in the topic hashes).
local function pending_names() return redis.call('HKEYS', K.pending) end

-- ---------------------------------------------------------------- table tokens
-- K.tables maps a broker name to the token of the registration body whose topic table its
-- queue data equals (see register_broker.lua). Any other change to that queue data forgets
-- the token, so a registration can only be applied as a diff on top of exactly that table.
local forgotten = {}
local function forget_table(broker_name)
  if not forgotten[broker_name] then
    forgotten[broker_name] = true
    redis.call('HDEL', K.tables, broker_name)
    local rec = pending_of(broker_name) -- a pending put must not store its token at the end
    if rec and rec.kind == 'put' and not rec.forgot then rec.forgot = true; save_pending(broker_name, rec) end
  end
end

-- Write one broker's queue data of a topic; true when it changed.
local function put_queue_data(topic, broker_name, value)
  local key = k_topic(topic)
  unstage(topic, broker_name)
  if redis.call('HGET', key, broker_name) == value then return false end
  forget_table(broker_name)
  redis.call('HSET', key, broker_name, value)
  redis.call('SADD', K.topics, topic)
  redis.call('SADD', k_broker_topics(broker_name), topic)
  touch_topic(topic)
  return true
end

-- Drop one broker's queue data from a topic; the topic goes when no queue data is left.
-- True when there was queue data to drop.
local function drop_queue_data(topic, broker_name)
  local key = k_topic(topic)
  local unstaged = unstage(topic, broker_name)
  local dropped = (redis.call('HDEL', key, broker_name) == 1) or unstaged
  if dropped then
    forget_table(broker_name)
    touch_topic(topic)
    if redis.call('EXISTS', key) == 0 then redis.call('SREM', K.topics, topic) end
  end
  redis.call('SREM', k_broker_topics(broker_name), topic)
  return dropped
end

local function with_write_perm(v, mode) -- queue data text with its perm wiped or added
  local r, w, perm, flag = qd_parse(v)
  if mode == 'wipe' then perm = without_write(perm) else perm = PERM_READ + PERM_WRITE end
  return qd_format(r, w, perm, flag)
end

-- Rewrite the perm of every queue data of a broker; returns how many topics it holds. More
-- topics than a chunk: a 'perm' record (route.lua shows the new perms at once, and
-- apply_pending.lua rewrites them in chunks).
local function set_write_perm(broker_name, mode)
  local bt = k_broker_topics(broker_name)
  local rec = pending_of(broker_name)
  if rec and rec.kind == 'drop' then return 0 end -- its queue data is already hidden
  if (rec and rec.kind == 'perm') or (not rec and redis.call('SCARD', bt) > CHUNK) then
    save_pending(broker_name, { kind = 'perm', mode = mode, phase = 'perm', cursor = '0',
      changed = rec and rec.changed or false })
    touch_all()
    return redis.call('SCARD', bt)
  end
  local count = 0
  for _, t in ipairs(redis.call('SMEMBERS', bt)) do
    local v = redis.call('HGET', k_topic(t), broker_name)
    if v then
      local nv = with_write_perm(v, mode)
      if nv ~= v then
        forget_table(broker_name)
        redis.call('HSET', k_topic(t), broker_name, nv)
        touch_topic(t)
      end
      count = count + 1
    end
  end
  return count
end

-- ---------------------------------------------------------------- broker data (JSON)
local function get_broker(name)
  local s = redis.call('HGET', K.brokers, name)
  if s then return cjson.decode(s) end
  return nil
end

-- Deterministic encoding: ids in numeric order, keys in fastjson's alphabetical order.
-- Broker ids are Java longs kept as canonical text (exact beyond 2^53).
local function encode_broker(bd)
  local ids = {}
  for id, _ in pairs(bd.brokerAddrs) do ids[#ids + 1] = id end
  table.sort(ids, long_lt)
  local parts = {}
  for _, sid in ipairs(ids) do
    parts[#parts + 1] = '"' .. sid .. '":' .. cjson.encode(bd.brokerAddrs[sid])
  end
  local s = '{"brokerAddrs":{' .. table.concat(parts, ',') .. '},"brokerName":' ..
    cjson.encode(bd.brokerName) .. ',"cluster":' .. cjson.encode(bd.cluster)
  if type(bd.enableActingMaster) == 'boolean' then
    s = s .. ',"enableActingMaster":' .. tostring(bd.enableActingMaster)
  end
  if type(bd.zoneName) == 'string' then s = s .. ',"zoneName":' .. cjson.encode(bd.zoneName) end
  return s .. '}'
end

local function min_broker_id(bd) -- canonical text, or nil for a group without address
  local m = nil
  for id, _ in pairs(bd.brokerAddrs) do
    if m == nil or long_lt(id, m) then m = id end
  end
  return m
end

-- ---------------------------------------------------------------- liveness
-- Push a live broker's deadline forward. Returns 1 when refreshed; 2 when its liveness key was
-- gone although the broker is still in the tables and its deadline has not passed (evicted or
-- deleted, not expired: a maxmemory volatile-* policy evicts the namespace's only keys with a
-- TTL first), so it was recreated with `timeout` and the refreshing connection `conn` (data
-- version '' makes the broker's next QUERY_DATA_VERSION answer "changed": it re-registers in
-- full); 0 when it is not registered (never, or already removed).
local function refresh_liveness(cluster, addr, now, timeout, conn)
  local ident = ident_of(cluster, addr)
  local key = k_live(ident)
  local stored = redis.call('HGET', key, 'timeout')
  local status = 1
  if stored then
    timeout = tonumber(stored)
    redis.call('HSET', key, 'last', now)
  else
    local name = redis.call('HGET', K.addr_names, ident)
    if not name then return 0 end
    local deadline = redis.call('ZSCORE', K.deadlines, ident)
    if deadline and tonumber(deadline) <= now then return 0 end -- timed out: the sweeper's
    local bd = get_broker(name)
    local id = nil
    for i, a in pairs(bd and bd.brokerAddrs or {}) do
      if a == addr then id = i end
    end
    if id == nil then return 0 end
    redis.call('HSET', key, 'name', name, 'id', id, 'dv', '', 'sv', '0', 'ha', '', 'last', now,
      'timeout', timeout, 'conn', conn)
    status = 2
  end
  redis.call('PEXPIRE', key, timeout)
  redis.call('ZADD', K.deadlines, now + timeout, ident)
  return status
end

-- Remove one broker process (cluster@addr) from every table: live info, deadline, filter
-- servers, its address in the broker data; the broker name, its cluster entry and its queue
-- data when no address is left. Idempotent. Returns (broker name or '', removed?) where
-- removed is true only for the call that actually took something away.
local function remove_broker_process(cluster, addr, broker_name)
  local ident = ident_of(cluster, addr)
  local removed = redis.call('DEL', k_live(ident)) == 1
  removed = (redis.call('ZREM', K.deadlines, ident) == 1) or removed
  local stored_name = redis.call('HGET', K.addr_names, ident)
  redis.call('HDEL', K.addr_names, ident)
  -- The name this process registered under wins over the one a request names: an address
  -- left in another group would never expire.
  if stored_name then broker_name = stored_name end
  if not broker_name or broker_name == '' then return '', removed end
  if redis.call('HDEL', K.filters, ident) == 1 then touch_broker(broker_name); removed = true end
  local bd = get_broker(broker_name)
  if not bd then return broker_name, removed end
  local dropped = false
  for id, a in pairs(bd.brokerAddrs) do
    if a == addr then bd.brokerAddrs[id] = nil; dropped = true end
  end
  if not dropped then return broker_name, removed end
  touch_broker(broker_name)
  if next(bd.brokerAddrs) == nil then
    redis.call('HDEL', K.brokers, broker_name)
    -- the group leaves every cluster that lists it (a misconfigured estate may register one
    -- broker name from several clusters; there are few clusters)
    for _, c in ipairs(redis.call('SMEMBERS', K.clusters)) do
      local ck = k_cluster(c)
      redis.call('SREM', ck, broker_name)
      if redis.call('EXISTS', ck) == 0 then redis.call('SREM', K.clusters, c) end
    end
    local rec = pending_of(broker_name)
    if rec or redis.call('SCARD', k_broker_topics(broker_name)) > CHUNK then
      -- too big for one script, or a chunked write is under way: from now on route.lua hides
      -- all of its queue data, which apply_pending.lua drops in chunks
      if not (rec and rec.kind == 'drop') then
        local drop = { kind = 'drop', gen = '', buckets = 0, phase = 'drop', next = 0 }
        if rec then -- the superseded put's stage is cleaned afterwards
          drop.gen, drop.buckets = rec.gen, rec.buckets
          if rec.phase == 'clean' then drop.next = rec.next end
        end
        save_pending(broker_name, drop)
      end
      redis.call('HDEL', K.tables, broker_name)
      forgotten[broker_name] = true
      touch_all()
    else
      for _, t in ipairs(redis.call('SMEMBERS', k_broker_topics(broker_name))) do
        drop_queue_data(t, broker_name)
      end
      redis.call('DEL', k_broker_topics(broker_name))
      forget_table(broker_name)
    end
  else
    redis.call('HSET', K.brokers, broker_name, encode_broker(bd))
    -- RocketMQ 5: an acting-master group that lost its master loses write permission.
    if bd.enableActingMaster == true and bd.brokerAddrs['0'] == nil then
      set_write_perm(broker_name, 'wipe')
    end
  end
  return broker_name, true
end

-- ================================================================= script body follows

-- ---------------------------------------------------------------- controller (docs/controller.md)
-- RocketMQ 5 Controller mode: one hash per broker group (ctrl:group:<name>) and one liveness
-- hash with a TTL per broker id (ctrl-live:<id>:<name>); controller_*.lua change them.
K.ctrl_groups = P .. 'ctrl:groups'
K.ctrl_deadlines = P .. 'ctrl-deadlines'
local function k_ctrl_group(name) return P .. 'ctrl:group:' .. name end
local function ctrl_member(name, id) return string.format('%d', id) .. ':' .. name end
local function k_ctrl_live(name, id) return P .. 'ctrl-live:' .. ctrl_member(name, id) end
local function ctrl_alive(name, id) return redis.call('EXISTS', k_ctrl_live(name, id)) == 1 end
-- the group's hash as a table (sset decoded into a sorted id list), or nil when unknown
local function ctrl_group(name)
  local flat = redis.call('HGETALL', k_ctrl_group(name))
  if #flat == 0 then return nil end
  local g = {}
  for i = 1, #flat, 2 do g[flat[i]] = flat[i + 1] end
  g.mepoch, g.sepoch, g.next = tonumber(g.mepoch), tonumber(g.sepoch), tonumber(g.next)
  g.master = tonumber(g.master) -- nil: no master
  g.ids = {}
  for _, id in ipairs(cjson.decode(g.sset)) do g.ids[#g.ids + 1] = id end
  table.sort(g.ids)
  return g
end
local function ctrl_id_list(ids) -- JSON array text (cjson writes an empty table as {})
  local out = {}
  for i, id in ipairs(ids) do out[i] = string.format('%d', id) end
  return '[' .. table.concat(out, ',') .. ']'
end
-- the reply every controller script gives: a status code, a remark and the group's state
local function ctrl_reply(code, remark, name, extra)
  local g = ctrl_group(name)
  local parts = { '{"code":' .. code, '"remark":' .. cjson.encode(remark or '') }
  if g then
    local addrs = {}
    for k, v in pairs(g) do
      local id = string.match(k, '^addr:(%d+)$')
      if id then addrs[#addrs + 1] = cjson.encode(id) .. ':' .. cjson.encode(v) end
    end
    table.sort(addrs)
    parts[#parts + 1] = '"group":{"cluster":' .. cjson.encode(g.cluster) .. ',"next":' ..
      g.next .. ',"master":' .. (g.master and string.format('%d', g.master) or 'null') ..
      ',"mepoch":' .. g.mepoch .. ',"sepoch":' .. g.sepoch .. ',"sset":' .. ctrl_id_list(g.ids) ..
      ',"addrs":{' .. table.concat(addrs, ',') .. '},"master_alive":' ..
      ((g.master and ctrl_alive(name, g.master)) and 'true' or 'false') .. '}'
  end
  if extra then parts[#parts + 1] = extra end
  return table.concat(parts, ',') .. '}'
end
