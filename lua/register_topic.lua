-- register_topic.lua — REGISTER_TOPIC_IN_NAMESRV (RocketMQ 5, RouteInfoManager#registerTopic):
-- write a topic's queue data directly. All or nothing: if any queue data names a broker that
-- is not registered, nothing is written (RocketMQ logs "illegal broker" and stops).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  topic   ARGV[2]  N; then N groups of 5: broker name, readQueueNums,
--          writeQueueNums, perm, topicSysFlag
--
-- Returns {1 written / 0 refused (unknown broker) / 0 with N = 0, routeVersion}.

local topic, n = ARGV[1], tonumber(ARGV[2])
if n == 0 then return { 0, 0 } end
for i = 0, n - 1 do
  if redis.call('HEXISTS', K.brokers, ARGV[3 + i * 5]) == 0 then return { 0, 0 } end
end
for i = 0, n - 1 do
  local b = 3 + i * 5
  put_queue_data(topic, ARGV[b], qd_format(tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]),
    tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])))
end
return { 1, publish_changes('register_topic') }
