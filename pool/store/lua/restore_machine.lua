-- Rebuild the record of a leased machine that Redis lost (a restart, a flush), from the
-- provider (address, token hash) and the Postgres ledger (session, user, epoch), so that its
-- agent is let in again and its session goes on. A record that exists is never overwritten.
-- ARGV: prefix, machine_id, template, region, address, session, user, epoch, token_sha256
-- Returns 1 when the record was rebuilt, 0 when one already existed.
local p, machine_id, template, region, address = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local session, user, epoch, digest = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local key = p .. 'm:' .. machine_id
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, 'state', 'leased', 'epoch', epoch, 'template', template,
           'region', region, 'address', address, 'session', session, 'user', user,
           'tier', 'hot', 'token_sha256', digest)
redis.call('SADD', p .. 'machines:' .. template .. ':' .. region, machine_id)
redis.call('SADD', p .. 'pools', template .. ':' .. region)
redis.call('SADD', p .. 'user:' .. user, session)
return 1
