-- config_update.lua — UPDATE_NAMESRV_CONFIG: store name-server options shared by every pod
-- (the pods re-read them on the 'config' event). Options can change route answers
-- (orderMessageEnable), so every pod's route cache is flushed.
--
-- KEYS[1]  namespace prefix
-- ARGV     option name, value, option name, value, … (RocketMQ's camelCase names)
--
-- Returns the route version.

if #ARGV == 0 then return 0 end
redis.call('HSET', K.config, (unpack or table.unpack)(ARGV))
touch_all()
return publish_changes('config')
