-- Record a machine created on demand for one session, directly as leased to it.
-- KEYS: m:{machine}, booting-sessions:{template}:{region}, machines:{template}:{region}, pools
-- ARGV: machine_id, template, region, address, session, user, channel (ch:machine:{machine})
-- The machine's record (booting, written by mark_booting with the token hash) must exist: a
-- record Redis lost is never recreated here without its token hash.
-- Returns the epoch, or -1 when the session's boot slot is gone (the session was ended or the
-- boot already claimed) or the machine's record is, in which case nothing is written.
local key, boot_key, machines_key, pools_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local machine_id, template, region = ARGV[1], ARGV[2], ARGV[3]
local address, session, user, channel = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HGET', key, 'state') ~= 'booting' then
  return -1
end
if redis.call('ZREM', boot_key, session) == 0 then
  return -1
end
local epoch = redis.call('HINCRBY', key, 'epoch', 1)
redis.call('HSET', key, 'state', 'leased', 'template', template, 'region', region,
           'address', address, 'session', session, 'user', user)
redis.call('SADD', machines_key, machine_id)
redis.call('SADD', pools_key, template .. ':' .. region)
redis.call('PUBLISH', channel, cjson.encode({kind = 'assign', session = session}))
return epoch
