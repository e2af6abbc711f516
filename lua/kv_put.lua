-- kv_put.lua — PUT_KV_CONFIG (KVConfigManager#putKVConfig).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  KV namespace   ARGV[2]  key   ARGV[3]  value
-- ARGV[4]  the order-topic namespace (ORDER_TOPIC_CONFIG): its keys are topics whose route
--          answers carry orderTopicConf, so a change there is a route change of that topic
--
-- Returns the route version (0 when no route answer changed).

local A = checker('kv_put')
A.count(4)
A.str(1, 'KV namespace'); A.str(2, 'key'); A.str(3, 'value'); A.str(4, 'order-topic namespace')
if A.err then return A.err end

redis.call('SADD', K.kvns, ARGV[1])
redis.call('SREM', K.kvns_emptied, ARGV[1])
if redis.call('HGET', k_kv(ARGV[1]), ARGV[2]) ~= ARGV[3] then
  redis.call('HSET', k_kv(ARGV[1]), ARGV[2], ARGV[3])
  if ARGV[1] == ARGV[4] then touch_topic(ARGV[2]) end
end
return publish_changes('kv')
