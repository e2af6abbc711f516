-- stage_topics.lua — stage part of a big registration's topic table, invisible to readers,
-- before register_broker.lua commits it (see "chunked writes" in _common.lua).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  generation: unique per registration attempt (letters, digits, '-', '_')
-- ARGV[2]  bucket index i (0 <= i < ARGV[3])    ARGV[3]  bucket count
-- ARGV[4]  TTL of the stage key (ms): what a pod dying before the commit leaves expires
-- ARGV[5]  N = number of topics; then N groups of 5: topic, readQueueNums, writeQueueNums,
--          perm, topicSysFlag — every topic in bucket i (stage_bucket), N <= 10000
--
-- Returns the number of topics the bucket holds. Idempotent (a topic staged twice is one).

local A = checker('stage_topics')
local gen = A.name(1, 'generation')
if gen ~= '' and not string.match(gen, '^[%w_%-]+$') then
  return redis.error_reply('ERR invalid argument: stage_topics ARGV[1] (generation) must be ' ..
    'letters, digits, - or _')
end
local buckets = A.int(3, 'bucket count', 1, 1000000)
local bucket = A.int(2, 'bucket index', 0, math.max(buckets - 1, 0))
local ttl = A.int(4, 'stage TTL ms', 1000, 86400000)
local n = A.int(5, 'topic count', 0, 10000)
local FIRST = 6
if not A.err then A.count(FIRST - 1 + 5 * n) end
local fields = {}
if not A.err then
  for i = 0, n - 1 do
    local base = FIRST + i * 5
    local t = A.name(base, 'topic')
    local r = A.int(base + 1, 'readQueueNums', JAVA_INT_MIN, JAVA_INT_MAX)
    local w = A.int(base + 2, 'writeQueueNums', JAVA_INT_MIN, JAVA_INT_MAX)
    local perm = A.int(base + 3, 'perm', JAVA_INT_MIN, JAVA_INT_MAX)
    local flag = A.int(base + 4, 'topicSysFlag', JAVA_INT_MIN, JAVA_INT_MAX)
    if A.err then break end
    if stage_bucket(t, buckets) ~= bucket then
      return redis.error_reply('ERR invalid argument: stage_topics ARGV[' .. base ..
        '] (topic) does not belong to bucket ' .. bucket)
    end
    fields[#fields + 1] = t
    fields[#fields + 1] = qd_format(r, w, perm, flag)
  end
end
if A.err then return A.err end

local key = k_stage(gen, bucket)
for i = 1, #fields, 400 do
  redis.call('HSET', key, unpack(fields, i, math.min(i + 399, #fields)))
end
redis.call('PEXPIRE', key, ttl)
return redis.call('HLEN', key)
