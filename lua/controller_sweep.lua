-- controller_sweep.lua — the controller sweeper: the broker ids whose liveness key is gone and
-- whose deadline (Redis' clock) has passed leave the deadline index; the caller re-checks the
-- masters among them (an election is its own compare-and-set).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  at most this many entries (1..10000)
--
-- Returns a JSON array of "<id>:<brokerName>" members that were taken out of the index.

local A = checker('controller_sweep')
A.count(1)
local limit = A.int(1, 'limit', 1, 10000)
if A.err then return A.err end

local now = redis_now_ms()
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
