-- Rebuild the record of a leased machine that Redis lost (a restart, a flush), from the
-- provider (address, token hash) and the Postgres ledger (session, user, epoch), so that its
-- agent is let in again and its session goes on. A record that exists is never overwritten.
-- KEYS: m:{machine}, machines:{template}:{region}, pools, user:{user}
-- ARGV: machine_id, template, region, address, session, user, epoch, token_sha256
-- Returns 1 when the record was rebuilt, 0 when one already existed.
local key, machines_key, pools_key, user_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local machine_id, template, region, address = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local session, user, epoch, digest = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, 'state', 'leased', 'epoch', epoch, 'template', template,
           'region', region, 'address', address, 'session', session, 'user', user,
           'tier', 'hot', 'token_sha256', digest)
redis.call('SADD', machines_key, machine_id)
redis.call('SADD', pools_key, template .. ':' .. region)
redis.call('SADD', user_key, session)
return 1
