-- Promote a pending lease after its Postgres commit. Idempotent for the same epoch.
-- KEYS: m:{machine}, pending
-- ARGV: machine_id, epoch, session, machine channel (ch:machine:{machine})
-- Returns 1 when the machine is leased to this (epoch, session), 0 when the lease is stale.
local key, pending_key = KEYS[1], KEYS[2]
local machine_id, epoch, session, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fields = redis.call('HMGET', key, 'state', 'epoch', 'session')
if fields[2] ~= epoch or fields[3] ~= session then
  return 0
end
if fields[1] == 'pending' then
  redis.call('HSET', key, 'state', 'leased')
  redis.call('HDEL', key, 'pending_until')
  redis.call('ZREM', pending_key, machine_id)
  -- The gateway instance holding this machine's agent socket hears it here.
  redis.call('PUBLISH', channel, cjson.encode({kind = 'assign', session = session}))
  return 1
end
if fields[1] == 'leased' then
  return 1
end
return 0
