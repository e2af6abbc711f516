-- cluster_info.lua — read GET_BROKER_CLUSTER_INFO's tables in one round trip. Read-only.
--
-- KEYS[1]  namespace prefix
--
-- Returns {routeVersion, brokers (flat: name, BrokerData JSON, …),
--          clusters (flat: cluster name, {broker names}, …)}.

local A = checker('cluster_info')
A.count(0)
if A.err then return A.err end

local clusters = {}
for _, c in ipairs(redis.call('SMEMBERS', K.clusters)) do
  clusters[#clusters + 1] = c
  clusters[#clusters + 1] = redis.call('SMEMBERS', k_cluster(c))
end
return { redis.call('GET', K.version) or '0', redis.call('HGETALL', K.brokers), clusters }
