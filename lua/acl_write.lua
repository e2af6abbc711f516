-- acl_write.lua — create, replace or delete one ACL credential (accessKey -> secretKey and
-- permission) of the namespace. Not a route change: no version bump, no event (pods re-read
-- the credentials every aclRefreshMs).
--
-- KEYS[1]  namespace prefix
-- ARGV[1]  operation: 'put' (create or replace), 'putnx' (create only), 'del'
-- ARGV[2]  accessKey (non-empty)
-- ARGV[3]  credential JSON {"secretKey": "<non-empty>", "permission": "admin"|"broker"}
--          (put and putnx only)
--
-- Returns 1 when something changed (created, replaced or deleted), 0 when not (putnx of an
-- existing key, del of a missing one). Bad arguments raise before any write.

local key = P .. 'acl'
local op, ak = ARGV[1], ARGV[2]
if op ~= 'put' and op ~= 'putnx' and op ~= 'del' then
  return redis.error_reply('acl_write: unknown operation ' .. tostring(op))
end
if ak == nil or ak == '' then
  return redis.error_reply('acl_write: empty accessKey')
end
if op == 'del' then
  return redis.call('HDEL', key, ak)
end
local ok, cred = pcall(cjson.decode, ARGV[3] or '')
if not ok or type(cred) ~= 'table' then
  return redis.error_reply('acl_write: credential is not a JSON object')
end
if type(cred.secretKey) ~= 'string' or cred.secretKey == '' then
  return redis.error_reply('acl_write: secretKey must be a non-empty string')
end
if cred.permission ~= 'admin' and cred.permission ~= 'broker' then
  return redis.error_reply('acl_write: permission must be admin or broker')
end
if op == 'putnx' then
  return redis.call('HSETNX', key, ak, ARGV[3])
end
if redis.call('HGET', key, ak) == ARGV[3] then return 0 end
redis.call('HSET', key, ak, ARGV[3])
return 1
