-- Put a machine into the pool: a new one that finished booting, a recycled one, or one that
-- moved between tiers.
-- ARGV: prefix, machine_id, template, region, address, expected_state, expected_epoch, tier
-- expected_state '' means a new machine: its record, written by mark_booting with the token
-- hash, must still be 'booting'. This script never creates a record: one that Redis lost (a
-- restart, a flush) must not come back without its token hash, so the caller replaces the
-- machine instead (and reconcile rebuilds the records of leased machines).
-- tier is 'hot' (the default), 'suspended' or 'stopped': the list the machine joins.
-- A hot machine whose agent is connected right now (its channel has a subscriber: a gateway's
-- socket for that agent) gets `agent` = now; lease.lua then skips it once that agent is gone.
-- Returns the new epoch, or -1 when the machine is not in the expected state/epoch (someone
-- else already moved it, or its record is gone), so a duplicate job delivery does nothing twice.
local p, machine_id, template, region, address = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expected_state, expected_epoch = ARGV[6], ARGV[7]
local tier = ARGV[8]
if not tier or tier == '' then tier = 'hot' end
local key = p .. 'm:' .. machine_id
local fields = redis.call('HMGET', key, 'state', 'epoch')
if expected_state == '' then
  if fields[1] ~= 'booting' then return -1 end
else
  if fields[1] ~= expected_state or fields[2] ~= expected_epoch then return -1 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HINCRBY', key, 'epoch', 1)
redis.call('HSET', key, 'state', 'ready', 'template', template, 'region', region,
           'address', address, 'ready_at', now, 'tier', tier)
redis.call('HDEL', key, 'taken_at', 'agent', 'agent_lost_at')
if tier == 'hot' then
  -- pcall: a Redis that refuses PUBSUB in scripts marks nothing (and lease.lua checks nothing).
  local subscribers = redis.pcall('PUBSUB', 'NUMSUB', p .. 'ch:machine:' .. machine_id)
  if type(subscribers) == 'table' and (subscribers[2] or 0) > 0 then
    redis.call('HSET', key, 'agent', t[1])
  end
end
redis.call('SADD', p .. 'machines:' .. template .. ':' .. region, machine_id)
redis.call('SADD', p .. 'pools', template .. ':' .. region)
local list = tier == 'hot' and 'ready:' or ('ready-' .. tier .. ':')
redis.call('LPUSH', p .. list .. template .. ':' .. region, machine_id)
return epoch
