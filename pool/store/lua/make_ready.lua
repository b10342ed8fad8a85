-- Put a machine into the pool: a new one that finished booting, a recycled one, or one that
-- moved between tiers.
-- KEYS: m:{machine}, machines:{template}:{region}, pools, the ready list of `tier`
-- ARGV: machine_id, template, region, address, expected_state, expected_epoch, tier,
--       channel (ch:machine:{machine})
-- expected_state '' means a new machine: its record, written by mark_booting with the token
-- hash, must still be 'booting'. This script never creates a record: one that Redis lost (a
-- restart, a flush) must not come back without its token hash, so the caller replaces the
-- machine instead (and reconcile rebuilds the records of leased machines).
-- Only a booting, recycling or moving machine becomes ready here (pool.core.states): a pending
-- one goes back with release.lua, which also frees its user's slot; a leased one never does.
-- tier is 'hot' (the default), 'suspended' or 'stopped': the list the machine joins.
-- A hot machine whose agent is connected right now (its channel has a subscriber: a gateway's
-- socket for that agent) gets `agent` = now; lease.lua then skips it once that agent is gone.
-- Returns the new epoch, or -1 when the machine is not in the expected state/epoch (someone
-- else already moved it, or its record is gone), so a duplicate job delivery does nothing twice.
local key, machines_key, pools_key, list_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local machine_id, template, region, address = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expected_state, expected_epoch = ARGV[5], ARGV[6]
local tier = ARGV[7]
if not tier or tier == '' then tier = 'hot' end
local channel = ARGV[8]
local fields = redis.call('HMGET', key, 'state', 'epoch')
if expected_state == '' then
  if fields[1] ~= 'booting' then return -1 end
elseif expected_state ~= 'booting' and expected_state ~= 'recycling'
    and expected_state ~= 'moving' then
  return -1
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
  local subscribers = redis.pcall('PUBSUB', 'NUMSUB', channel)
  if type(subscribers) == 'table' and (subscribers[2] or 0) > 0 then
    redis.call('HSET', key, 'agent', t[1])
  end
end
redis.call('SADD', machines_key, machine_id)
redis.call('SADD', pools_key, template .. ':' .. region)
redis.call('LPUSH', list_key, machine_id)
return epoch
