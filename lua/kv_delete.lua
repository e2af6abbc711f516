-- kv_delete.lua — DELETE_KV_CONFIG (KVConfigManager#deleteKVConfig). The namespace itself
-- stays known when its last key goes (RocketMQ keeps the emptied table: GET_KVLIST answers {}),
-- and is listed in kvns-emptied so that `check` does not take it for a lost table.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  KV namespace   ARGV[2]  key   ARGV[3]  the order-topic namespace (see kv_put.lua)
--
-- Returns the route version (0 when no route answer changed).

local A = checker('kv_delete')
A.count(3)
A.str(1, 'KV namespace'); A.str(2, 'key'); A.str(3, 'order-topic namespace')
if A.err then return A.err end

if redis.call('HDEL', k_kv(ARGV[1]), ARGV[2]) == 1 then
  if ARGV[1] == ARGV[3] then touch_topic(ARGV[2]) end
  -- emptied on purpose: `check` tells it from a table lost to eviction or DEL
  if redis.call('EXISTS', k_kv(ARGV[1])) == 0 then redis.call('SADD', K.kvns_emptied, ARGV[1]) end
end
return publish_changes('kv')
