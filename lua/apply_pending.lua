-- apply_pending.lua — one bounded step of a committed chunked write (see "chunked writes" in
-- _common.lua): moves at most ARGV[2] topics of a broker's pending record into the route
-- tables, and deletes the record after the last step. Readers see no change (route.lua already
-- shows the record's outcome), so nothing is published. Any pod may run it, any number of
-- times, concurrently: each step starts where the record says the previous one ended.
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  broker name    ARGV[2]  the most topics this step handles (1..10000)
--
-- Returns {done (1 when no record is left), topics whose queue data this step wrote}.

local A = checker('apply_pending')
A.count(2)
local name = A.name(1, 'broker name')
local chunk = A.int(2, 'chunk', 1, 10000)
if A.err then return A.err end

local rec = pending_of(name)
if not rec then redis.call('HDEL', K.pending, name); return { 1, 0 } end
local bt = k_broker_topics(name)
local written = 0

-- queue data written by the commit that the record stands for: its table token stays valid
local function apply_put(topic, value)
  local key = k_topic(topic)
  if redis.call('HGET', key, name) == value then return end
  redis.call('HSET', key, name, value)
  redis.call('SADD', K.topics, topic)
  redis.call('SADD', bt, topic)
  written = written + 1
end
local function apply_drop(topic)
  local key = k_topic(topic)
  if redis.call('HDEL', key, name) == 1 and redis.call('EXISTS', key) == 0 then
    redis.call('SREM', K.topics, topic)
  end
  redis.call('SREM', bt, topic)
end

local function finish()
  if rec.kind == 'put' and rec.token ~= '' and not rec.forgot and (rec.rewrite or
      (rec.matches and (not rec.dm or redis.call('SCARD', bt) == rec.n))) then
    redis.call('HSET', K.tables, name, rec.token)
  end
  if rec.kind == 'drop' and redis.call('SCARD', bt) == 0 then redis.call('DEL', bt) end
  redis.call('HDEL', K.pending, name)
  return { 1, written }
end

if rec.phase == 'put' then
  local key = k_stage(rec.gen, rec.next)
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    local r, w, perm, flag = qd_parse(entries[i + 1])
    if rec.ro then perm = without_write(perm) end
    local value = qd_format(r, w, perm, flag)
    if rec.rewrite then
      apply_put(entries[i], value)
    else
      local stored = redis.call('HGET', k_topic(entries[i]), name)
      if not stored then apply_put(entries[i], value)
      elseif stored ~= value then rec.matches = false end
    end
  end
  -- without deletions an applied bucket is no longer needed: route.lua then reads the tables
  if not rec.delete then redis.call('DEL', key) end
  rec.next = rec.next + 1
  if rec.next >= rec.buckets then
    if rec.delete then rec.phase, rec.cursor = 'sweep', '0' else return finish() end
  end
elseif rec.phase == 'sweep' then
  -- the topics the registration no longer lists (in no bucket) lose this broker's queue data
  local res = redis.call('SSCAN', bt, rec.cursor, 'COUNT', chunk)
  for _, t in ipairs(res[2]) do
    if redis.call('HEXISTS', k_stage(rec.gen, stage_bucket(t, rec.buckets)), t) == 0 then
      apply_drop(t)
    end
  end
  rec.cursor = res[1]
  if rec.cursor == '0' then rec.phase, rec.next = 'clean', 0 end
elseif rec.phase == 'drop' then
  local members = redis.call('SRANDMEMBER', bt, chunk)
  for _, t in ipairs(members) do apply_drop(t) end
  if #members < chunk or redis.call('SCARD', bt) == 0 then rec.phase = 'clean' end
  if rec.phase == 'clean' and rec.buckets == 0 then return finish() end
elseif rec.phase == 'perm' then
  local res = redis.call('SSCAN', bt, rec.cursor, 'COUNT', chunk)
  for _, t in ipairs(res[2]) do
    local key = k_topic(t)
    local v = redis.call('HGET', key, name)
    if v then
      local nv = with_write_perm(v, rec.mode)
      if nv ~= v then redis.call('HSET', key, name, nv); rec.changed = true; written = written + 1 end
    end
  end
  rec.cursor = res[1]
  if rec.cursor == '0' then
    -- the stored table token names queue data with the old perms
    if rec.changed then redis.call('HDEL', K.tables, name) end
    return finish()
  end
elseif rec.phase == 'clean' then
  redis.call('DEL', k_stage(rec.gen, rec.next))
  rec.next = rec.next + 1
  if rec.next >= rec.buckets then return finish() end
end
rec.written = (rec.written or 0) + written
save_pending(name, rec)
return { 0, written }
