-- kv_delete.lua — DELETE_KV_CONFIG (KVConfigManager#deleteKVConfig). The namespace itself
-- stays known when its last key goes (RocketMQ keeps the emptied table: GET_KVLIST answers {}).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  KV namespace   ARGV[2]  key   ARGV[3]  the order-topic namespace (see kv_put.lua)
--
-- Returns the route version (0 when no route answer changed).

if redis.call('HDEL', k_kv(ARGV[1]), ARGV[2]) == 1 and ARGV[1] == ARGV[3] then
  touch_topic(ARGV[2])
end
return publish_changes('kv')
