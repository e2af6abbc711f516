-- route.lua — read one topic's route in a single round trip (RouteInfoManager#pickupTopicRouteData).
-- Read-only.
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
