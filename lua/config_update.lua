-- config_update.lua — UPDATE_NAMESRV_CONFIG: store name-server options shared by every pod
-- (the pods re-read them on the 'config' event). Options can change route answers
-- (orderMessageEnable), so every pod's route cache is flushed.
--
-- KEYS[1]  namespace prefix
-- ARGV     option name, value, option name, value, … (RocketMQ's camelCase names)
--
-- Returns the route version (0 when no option changed: running it twice equals once).

local A = checker('config_update')
if #ARGV % 2 == 1 then A.count(#ARGV + 1) end
for i = 1, #ARGV - 1, 2 do A.name(i, 'option name') end
if A.err then return A.err end

for i = 1, #ARGV - 1, 2 do
  if redis.call('HGET', K.config, ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', K.config, ARGV[i], ARGV[i + 1])
    touch_all()
  end
end
return publish_changes('config')
