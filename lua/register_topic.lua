-- register_topic.lua — REGISTER_TOPIC_IN_NAMESRV (RocketMQ 5, RouteInfoManager#registerTopic):
-- write a topic's queue data directly. All or nothing: if any queue data names a broker that
-- is not registered, nothing is written (RocketMQ logs "illegal broker" and stops).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  topic   ARGV[2]  N; then N groups of 5: broker name, readQueueNums,
--          writeQueueNums, perm, topicSysFlag
--
-- Returns {1 written / 0 refused (unknown broker) / 0 with N = 0, routeVersion}.

local A = checker('register_topic')
local topic, n = A.name(1, 'topic'), A.int(2, 'queue data count', 0, MAX_SAFE_INT)
if not A.err then A.count(2 + 5 * n) end
A.queue_config_groups(3, n, 'broker name')
if A.err then return A.err end

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
