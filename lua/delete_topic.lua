-- delete_topic.lua — DELETE_TOPIC_IN_NAMESRV (RouteInfoManager#deleteTopic): drop a topic's
-- queue data everywhere, or only that of the brokers of one cluster (RocketMQ 5).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  topic   ARGV[2]  cluster name ('' = every broker)
--
-- Returns {number of broker queue datas removed, routeVersion}.

local topic, cluster = ARGV[1], ARGV[2]
local names
if cluster == '' then
  names = redis.call('HKEYS', k_topic(topic))
else
  names = redis.call('SMEMBERS', k_cluster(cluster))
end
local removed, dropped = 0, {}
for _, b in ipairs(names) do
  if redis.call('HEXISTS', k_topic(topic), b) == 1 then
    removed = removed + 1
    dropped[b] = true
  end
  drop_queue_data(topic, b)
end
-- The brokers still report the topic: forget their stored data version, so that their next
-- registration is a full one and restores it (RocketMQ 5 rewrites a reported topic that has
-- no queue data of the broker; without this, an unchanged re-registration would skip it).
if removed > 0 then
  local idents = redis.call('HGETALL', K.addr_names)
  for i = 1, #idents, 2 do
    if dropped[idents[i + 1]] then redis.call('HDEL', k_live(idents[i]), 'dv') end
  end
end
return { removed, publish_changes('delete_topic') }
