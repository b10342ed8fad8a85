-- Promote a pending lease after its Postgres commit. Idempotent for the same epoch.
-- ARGV: prefix, machine_id, epoch, session
-- Returns 1 when the machine is leased to this (epoch, session), 0 when the lease is stale.
local p, machine_id, epoch, session = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'm:' .. machine_id
local fields = redis.call('HMGET', key, 'state', 'epoch', 'session')
if fields[2] ~= epoch or fields[3] ~= session then
  return 0
end
if fields[1] == 'pending' then
  redis.call('HSET', key, 'state', 'leased')
  redis.call('HDEL', key, 'pending_until')
  redis.call('ZREM', p .. 'pending', machine_id)
  -- The gateway instance holding this machine's agent socket hears it here.
  redis.call('PUBLISH', p .. 'ch:machine:' .. machine_id,
             cjson.encode({kind = 'assign', session = session}))
  return 1
end
if fields[1] == 'leased' then
  return 1
end
return 0
