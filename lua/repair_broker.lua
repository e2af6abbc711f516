-- repair_broker.lua — level-triggered reconciliation: compare what Redis holds for one broker
-- process with the registration a pod last accepted from it, and put back whatever is missing
-- (or, where the stored table token says the queue data must equal that body, divergent).
-- Eviction, an operator's DEL or a tenant's mistake lose keys without any event; this finds
-- and repairs them. One call covers the broker's own records and one chunk of its topics
-- (the pod sends at most a few hundred per call, with a cursor), so no call is long.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  cluster name     ARGV[2]  broker address     ARGV[3]  broker name
-- ARGV[4]  broker id        ARGV[5]  data version (canonical JSON) of the accepted registration
-- ARGV[6]  state version    ARGV[7]  HA server address  ARGV[8]  body token ('' = none)
-- ARGV[9]  now (ms)         ARGV[10] heartbeat timeout (ms)   ARGV[11] connection id
-- ARGV[12] zone name ('' = none)    ARGV[13] enableActingMaster: '', 'true', 'false'
-- ARGV[14] N = topics of this chunk (0 for a broker that writes no queue data, e.g. a slave);
--          then N groups of 5: topic, readQueueNums, writeQueueNums, perm, topicSysFlag
--
-- Returns {status, routeVersion, live, deadline, addr_name, broker, cluster, queue_data,
--          topic_set, reverse_index, version}: how many of each part were repaired (a lost
--          route version is recreated by publishing "all changed"); status is
--   'ok'       verified (and repaired where needed);
--   'gone'     the broker is not registered (unregistered, expired, removed — or every record
--              of it was lost at once, which cannot be told from a removal): nothing written,
--              so a broker that really left is never resurrected by a stale repair;
--   'other'    its liveness entry belongs to another registration (another connection, data
--              version or broker name, or its id is held by another address): nothing written,
--              the pod holding that registration verifies it.
-- Idempotent: a second run finds nothing to repair.

local A = checker('repair_broker')
local cluster, addr, name = A.name(1, 'cluster name'), A.name(2, 'broker address'),
  A.name(3, 'broker name')
local sid = A.long(4, 'broker id')
local dv = A.str(5, 'data version')
A.json(5, 'data version')
local sv = A.long(6, 'state version')
local ha = A.str(7, 'HA server address')
local body_token = A.str(8, 'body token')
local now = A.int(9, 'now', 0, MAX_SAFE_INT)
local timeout = A.int(10, 'heartbeat timeout ms', HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
local conn = A.str(11, 'connection id')
local zone = A.str(12, 'zone name')
local acting = A.enum(13, 'enableActingMaster', { '', 'true', 'false' })
local n = A.int(14, 'topic count', 0, MAX_SAFE_INT)
local FIRST = 15
A.queue_configs(FIRST, n)
if A.err then return A.err end

local ident = ident_of(cluster, addr)
local live_key = k_live(ident)
local fixed = { live = 0, deadline = 0, addr_name = 0, broker = 0, cluster = 0, queue_data = 0,
  topic_set = 0, reverse_index = 0, version = 0 }
local function answer(status)
  return { status, publish_changes('repair'), fixed.live, fixed.deadline, fixed.addr_name,
    fixed.broker, fixed.cluster, fixed.queue_data, fixed.topic_set, fixed.reverse_index,
    fixed.version }
end

-- ---- is this registration still the broker's current one? (all checks before any write)
local live = redis.call('HMGET', live_key, 'name', 'dv', 'conn', 'id')
local bd = get_broker(name)
local holder = bd and bd.brokerAddrs[sid]
if holder and holder ~= addr then return answer('other') end -- failed over: another process
if live[1] then
  if live[1] ~= name or live[3] ~= conn or live[4] ~= sid then return answer('other') end
  if live[2] ~= '' and live[2] ~= dv then return answer('other') end
else
  -- No liveness key. A removal (unregister, expiry, closed connection) deletes the key, the
  -- deadline, the addr-names entry and the group's address in one script: any of them left
  -- means the key was evicted or deleted, not removed. None left is ambiguous: 'gone' (the
  -- broker's next registration, within 30 s, restores it). A deadline passed: timed out.
  local deadline = redis.call('ZSCORE', K.deadlines, ident)
  if deadline and tonumber(deadline) <= now then return answer('gone') end
  if not deadline and not holder and redis.call('HGET', K.addr_names, ident) ~= name then
    return answer('gone')
  end
end

-- ---- the broker process's own records
if not live[1] or live[2] == '' then
  redis.call('HSET', live_key, 'name', name, 'id', sid, 'dv', dv, 'sv', sv, 'ha', ha,
    'timeout', timeout, 'conn', conn)
  if not live[1] then
    redis.call('HSET', live_key, 'last', now)
    redis.call('PEXPIRE', live_key, timeout)
    redis.call('ZADD', K.deadlines, now + timeout, ident)
    fixed.live = 1
  end
end
if not redis.call('ZSCORE', K.deadlines, ident) then
  local pttl = redis.call('PTTL', live_key)
  redis.call('ZADD', K.deadlines, now + (pttl > 0 and pttl or timeout), ident)
  fixed.deadline = 1
end
if redis.call('HGET', K.addr_names, ident) ~= name then
  redis.call('HSET', K.addr_names, ident, name)
  fixed.addr_name = 1
end
if not holder then
  if bd == nil then
    bd = { cluster = cluster, brokerName = name, brokerAddrs = {} }
    if acting ~= '' then bd.enableActingMaster = (acting == 'true') end
    if zone ~= '' then bd.zoneName = zone end
  end
  bd.brokerAddrs[sid] = addr
  redis.call('HSET', K.brokers, name, encode_broker(bd))
  touch_broker(name)
  fixed.broker = 1
end
if redis.call('SADD', k_cluster(cluster), name) == 1 then
  touch_broker(name)
  fixed.cluster = fixed.cluster + 1
end
if redis.call('SADD', K.clusters, cluster) == 1 then fixed.cluster = fixed.cluster + 1 end

-- a registered broker implies a route version: a lost one starts again, every cache dropped
if redis.call('EXISTS', K.version) == 0 then
  touch_all()
  fixed.version = 1
end

-- ---- this chunk of its queue data. A value that differs is rewritten only while the stored
-- table token says the queue data equals this very body (any script changing it, such as
-- wipeWritePerm, forgets the token); missing queue data is always restored, as the broker's
-- next full registration would (RocketMQ 5's isTopicConfigChanged).
local stored_token = redis.call('HGET', K.tables, name)
local exact = body_token ~= '' and
  (stored_token == sid .. ':k:' .. body_token or stored_token == sid .. ':d:' .. body_token)
local index = k_broker_topics(name)
local names = {}
for i = 0, n - 1 do names[i + 1] = ARGV[FIRST + i * 5] end
local listed, indexed = {}, {}
if n > 0 then
  listed = redis.call('SMISMEMBER', K.topics, unpack(names))
  indexed = redis.call('SMISMEMBER', index, unpack(names))
end
for i = 0, n - 1 do
  local base = FIRST + i * 5
  local topic = ARGV[base]
  local value = qd_format(tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]),
    tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]))
  local stored = redis.call('HGET', k_topic(topic), name)
  if stored == false or (exact and stored ~= value) then
    redis.call('HSET', k_topic(topic), name, value)
    touch_topic(topic)
    fixed.queue_data = fixed.queue_data + 1
  end
  if listed[i + 1] == 0 and redis.call('SADD', K.topics, topic) == 1 then
    touch_topic(topic)
    fixed.topic_set = fixed.topic_set + 1
  end
  if indexed[i + 1] == 0 and redis.call('SADD', index, topic) == 1 then
    fixed.reverse_index = fixed.reverse_index + 1
  end
end
return answer('ok')
