-- Record a machine created on demand for one session, directly as leased to it.
-- ARGV: prefix, machine_id, template, region, address, session, user
-- The machine's record (booting, written by mark_booting with the token hash) must exist: a
-- record Redis lost is never recreated here without its token hash.
-- Returns the epoch, or -1 when the session's boot slot is gone (the session was ended or the
-- boot already claimed) or the machine's record is, in which case nothing is written.
local p, machine_id, template, region = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local address, session, user = ARGV[5], ARGV[6], ARGV[7]
local key = p .. 'm:' .. machine_id
if redis.call('HGET', key, 'state') ~= 'booting' then
  return -1
end
local boot_key = p .. 'booting-sessions:' .. template .. ':' .. region
if redis.call('ZREM', boot_key, session) == 0 then
  return -1
end
local epoch = redis.call('HINCRBY', key, 'epoch', 1)
redis.call('HSET', key, 'state', 'leased', 'template', template, 'region', region,
           'address', address, 'session', session, 'user', user)
redis.call('SADD', p .. 'machines:' .. template .. ':' .. region, machine_id)
redis.call('SADD', p .. 'pools', template .. ':' .. region)
redis.call('PUBLISH', p .. 'ch:machine:' .. machine_id,
           cjson.encode({kind = 'assign', session = session}))
return epoch
