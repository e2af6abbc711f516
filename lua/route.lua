-- route.lua — read one topic's route in a single round trip (RouteInfoManager#pickupTopicRouteData).
-- Read-only. A committed chunked write still being applied is shown whole (K.pending).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  topic
-- ARGV[2]  the order-topic KV namespace, or '' when orderMessageEnable is off
--
-- Returns {routeVersion, queueDatas, brokerDatas, filterServers, orderTopicConf}:
--   queueDatas    flat list: broker name, "r,w,perm,sysflag", …
--   brokerDatas   BrokerData JSON of each broker name of the topic that is registered
--   filterServers flat list: broker address, filter server list JSON, …
--   orderTopicConf the order config string, or ''

local A = checker('route')
A.count(2)
A.str(1, 'topic'); A.str(2, 'order-topic namespace')
if A.err then return A.err end

local version = redis.call('GET', K.version) or '0'
local qds = redis.call('HGETALL', k_topic(ARGV[1]))
if redis.call('EXISTS', K.pending) == 1 then
  -- a chunked write is under way: show its outcome, not its progress (_common.lua)
  local current, order = {}, {}
  for i = 1, #qds, 2 do current[qds[i]] = qds[i + 1]; order[#order + 1] = qds[i] end
  local pend = redis.call('HGETALL', K.pending)
  for i = 1, #pend, 2 do
    local b, rec = pend[i], decode_pending(pend[i + 1])
    if current[b] == nil then order[#order + 1] = b end
    if not rec then -- not a record: ignored (apply_pending.lua deletes it)
    elseif rec.kind == 'drop' then
      current[b] = nil
    elseif rec.kind == 'perm' then
      if current[b] then current[b] = with_write_perm(current[b], rec.mode) end
    elseif rec.phase ~= 'clean' then
      local staged = staged_value(rec, ARGV[1])
      if staged then
        local r, w, perm, flag = qd_parse(staged)
        if rec.ro then perm = without_write(perm) end
        if rec.rewrite or current[b] == nil then current[b] = qd_format(r, w, perm, flag) end
      elseif rec.delete then
        current[b] = nil
      end
    end
  end
  qds = {}
  for _, b in ipairs(order) do
    if current[b] then qds[#qds + 1] = b; qds[#qds + 1] = current[b] end
  end
end
local brokers, filters = {}, {}
local want_filters = redis.call('EXISTS', K.filters) == 1
for i = 1, #qds, 2 do
  local b = redis.call('HGET', K.brokers, qds[i])
  if b then
    brokers[#brokers + 1] = b
    if want_filters then
      local bd = cjson.decode(b)
      for _, a in pairs(bd.brokerAddrs) do
        local f = redis.call('HGET', K.filters, ident_of(bd.cluster, a))
        if f then filters[#filters + 1] = a; filters[#filters + 1] = f end
      end
    end
  end
end
local order = ''
if ARGV[2] ~= '' and #qds > 0 then order = redis.call('HGET', k_kv(ARGV[2]), ARGV[1]) or '' end
return { version, qds, brokers, filters, order }
