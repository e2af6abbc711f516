-- repair_drift.lua — `namesrv-redis check --repair`: fix drift that no connected broker vouches
-- for. Each operation re-checks its condition here, so a registration or removal that ran
-- since the check found the problem is never undone; running it twice changes nothing more.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  N = number of operations; then N groups of 3: operation, first name, second name
--   'orphan'       topic, broker name: drop the queue data of a broker name that is not
--                  registered (no broker data) from the topic (and the topic when none is left)
--   'index_add'    broker name, topic: add the topic to the broker's reverse index if the topic
--                  holds queue data of that broker
--   'index_drop'   broker name, topic: take the topic out of the broker's reverse index if the
--                  topic holds no queue data of that broker
--   'list'         topic, '': add the topic to the topics set if it holds queue data
--   'unlist'       topic, '': take the topic out of the topics set if it holds no queue data
--
-- Returns {changes, routeVersion}: how many operations changed something.

local A = checker('repair_drift')
local n = A.int(1, 'operation count', 0, MAX_SAFE_INT)
if not A.err then A.count(1 + 3 * n) end
if not A.err then
  for i = 0, n - 1 do
    local base = 2 + i * 3
    local op = A.enum(base, 'operation', { 'orphan', 'index_add', 'index_drop', 'list', 'unlist' })
    A.name(base + 1, 'name')
    if op == 'list' or op == 'unlist' then A.str(base + 2, 'unused') else A.name(base + 2, 'name') end
    if A.err then break end
  end
end
if A.err then return A.err end

local changes = 0
for i = 0, n - 1 do
  local base = 2 + i * 3
  local op, a, b = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local changed = false
  if op == 'orphan' then
    if redis.call('HEXISTS', K.brokers, b) == 0 then
      changed = drop_queue_data(a, b)
    end
  elseif op == 'index_add' then
    if redis.call('HEXISTS', k_topic(b), a) == 1 then
      changed = redis.call('SADD', k_broker_topics(a), b) == 1
    end
  elseif op == 'index_drop' then
    if redis.call('HEXISTS', k_topic(b), a) == 0 then
      changed = redis.call('SREM', k_broker_topics(a), b) == 1
    end
  elseif op == 'list' then
    if redis.call('EXISTS', k_topic(a)) == 1 and redis.call('SADD', K.topics, a) == 1 then
      touch_topic(a)
      changed = true
    end
  elseif op == 'unlist' then
    if redis.call('EXISTS', k_topic(a)) == 0 and redis.call('SREM', K.topics, a) == 1 then
      touch_topic(a)
      changed = true
    end
  end
  if changed then changes = changes + 1 end
end
return { changes, publish_changes('check') }
