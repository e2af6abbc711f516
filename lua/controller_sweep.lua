-- controller_sweep.lua — the controller sweeper: the broker ids past their deadline whose
-- liveness key is gone (its TTL decides, not the deadline) leave the deadline index; one still
-- alive gets its deadline fixed. The caller re-checks the masters among the gone ones (an
-- election is its own compare-and-set).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  at most this many entries (1..10000)   ARGV[2]  now (ms)
--
-- Returns a JSON array of "<id>:<brokerName>" members that were taken out of the index.

local A = checker('controller_sweep')
A.count(2)
local limit = A.int(1, 'limit', 1, 10000)
local now = A.int(2, 'now', 0, MAX_SAFE_INT)
if A.err then return A.err end

local gone = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', K.ctrl_deadlines, '-inf', now, 'LIMIT', 0, limit)) do
  local key = P .. 'ctrl-live:' .. m
  local pttl = redis.call('PTTL', key)
  if pttl == -2 then
    redis.call('ZREM', K.ctrl_deadlines, m)
    gone[#gone + 1] = cjson.encode(m)
  elseif pttl >= 0 then
    redis.call('ZADD', K.ctrl_deadlines, now + pttl, m) -- alive: its deadline was stale
  end
end
return '[' .. table.concat(gone, ',') .. ']'
