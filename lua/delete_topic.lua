-- delete_topic.lua — DELETE_TOPIC_IN_NAMESRV (RouteInfoManager#deleteTopic): drop a topic's
-- queue data everywhere, or only that of the brokers of one cluster (RocketMQ 5).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  topic   ARGV[2]  cluster name ('' = every broker)
--
-- Returns {number of broker queue datas removed, routeVersion}.

local A = checker('delete_topic')
A.count(2)
local topic, cluster = A.name(1, 'topic'), A.str(2, 'cluster name')
if A.err then return A.err end

local names
if cluster == '' then
  names = redis.call('HKEYS', k_topic(topic))
  for _, b in ipairs(pending_names()) do names[#names + 1] = b end -- not applied yet
else
  names = redis.call('SMEMBERS', k_cluster(cluster))
end
local removed = 0
for _, b in ipairs(names) do
  if drop_queue_data(topic, b) then removed = removed + 1 end
end
-- The brokers still report the topic: dropping queue data forgets their table tokens (see
-- _common.lua), so their next registration, even an unchanged one, cannot take the lite path
-- and restores it (RocketMQ 5 rewrites a reported topic holding no queue data of the broker).
return { removed, publish_changes('delete_topic') }
