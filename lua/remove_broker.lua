-- remove_broker.lua — take one broker process out of every route table.
-- Serves UNREGISTER_BROKER, the liveness cleaner and sweeper (expired), and a closed broker
-- connection (conn): RouteInfoManager#unregisterBroker / onChannelDestroy / scanNotActiveBroker.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  mode: 'unregister' (unconditional), 'expired' (only if the liveness key is gone —
--          a stale expiry event or sweep cannot remove a broker that re-registered — and its
--          deadline in the index has passed: an evicted key is not an expiry), or
--          'conn' (only if the live info still belongs to connection ARGV[5])
-- ARGV[2]  cluster name   ARGV[3]  broker address   ARGV[4]  broker name ('' = look it up)
-- ARGV[5]  connection id (mode 'conn')   ARGV[6]  now (ms)
-- ARGV[7]  the most topics one script may handle (the stall budget's chunk, 1..10000): the
--          queue data of a group with more topics is hidden now and dropped by apply_pending.lua
--
-- Returns {removed (1 only for the call that took it away), broker name, routeVersion,
-- pending (1: the broker name has a chunked write to apply: run apply_pending.lua)}.
-- Idempotent: a second run finds nothing and returns removed = 0.

local A = checker('remove_broker')
A.count(7)
local mode = A.enum(1, 'mode', { 'unregister', 'expired', 'conn' })
local cluster, addr = A.str(2, 'cluster name'), A.str(3, 'broker address')
A.str(4, 'broker name'); A.str(5, 'connection id')
local now = A.int(6, 'now', 0, MAX_SAFE_INT)
CHUNK = A.int(7, 'chunk', 1, 10000)
if A.err then return A.err end

local ident = ident_of(cluster, addr)
local live_key = k_live(ident)

if mode == 'expired' then
  local pttl = redis.call('PTTL', live_key)
  if pttl ~= -2 then
    -- still alive (re-registered meanwhile, or the sweeper's clock ran ahead): fix its deadline
    if pttl >= 0 then redis.call('ZADD', K.deadlines, now + pttl, ident) end
    return { 0, '', 0, 0 }
  end
  -- gone before its deadline (evicted or deleted, not expired): a refresh recreates it; only a
  -- deadline past (give or take a second of clock skew between pods and Redis) removes it
  local deadline = redis.call('ZSCORE', K.deadlines, ident)
  if deadline and tonumber(deadline) > now + 1000 then return { 0, '', 0, 0 } end
elseif mode == 'conn' then
  if redis.call('HGET', live_key, 'conn') ~= ARGV[5] then return { 0, '', 0, 0 } end
end

local name, removed = remove_broker_process(cluster, addr, ARGV[4])
local version = publish_changes(mode)
return { removed and 1 or 0, name, version, (name ~= '' and pending_of(name)) and 1 or 0 }
