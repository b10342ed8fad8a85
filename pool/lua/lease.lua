-- Lease one ready machine for (template, region), atomically with the user's quota checks.
-- ARGV: prefix, template, region, user, session, pending_ttl_ms, max_concurrent,
--       emission_interval_ms, burst, ondemand_max
-- Returns {outcome, ...}:
--   {'leased', machine_id, epoch, address}   a pending lease; promote it after the Postgres commit
--   {'boot'}                                 pool empty, an on-demand boot slot is reserved
--   {'empty'}                                pool empty and no boot slot: try later
--   {'quota', retry_after_ms}                concurrent-session limit reached
--   {'rate', retry_after_ms}                 creation rate limit reached (GCRA)
local p, template, region, user, session = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pending_ttl = tonumber(ARGV[6])
local max_concurrent = tonumber(ARGV[7])
local emission = tonumber(ARGV[8])
local burst = tonumber(ARGV[9])
local ondemand_max = tonumber(ARGV[10])
local pool = template .. ':' .. region

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local user_key = p .. 'user:' .. user
if redis.call('SCARD', user_key) >= max_concurrent then
  return {'quota', 30000}
end

-- GCRA: the theoretical arrival time advances by one emission interval per creation;
-- a request is allowed while it is at most `burst` intervals ahead of now.
local rate_key = p .. 'rate:' .. user
local tat = tonumber(redis.call('GET', rate_key) or '0')
if tat < now then tat = now end
local new_tat = tat + emission
local wait = new_tat - now - emission * burst
if wait > 0 then
  return {'rate', wait}
end

local stats_key = p .. 'stats:' .. pool
local demand_key = p .. 'demand:' .. pool .. ':' .. math.floor(now / 10000)

local ready_key = p .. 'ready:' .. pool
local machine_id = false
local machine_key
while true do
  local candidate = redis.call('RPOP', ready_key)
  if not candidate then break end
  machine_key = p .. 'm:' .. candidate
  -- A list entry whose machine is no longer ready (drained, forgotten) is dropped here.
  if redis.call('HGET', machine_key, 'state') == 'ready' then
    machine_id = candidate
    break
  end
end

local result
if machine_id then
  local epoch = redis.call('HINCRBY', machine_key, 'epoch', 1)
  redis.call('HSET', machine_key, 'state', 'pending', 'session', session, 'user', user,
             'pending_until', now + pending_ttl, 'leased_at', now)
  redis.call('ZADD', p .. 'pending', now + pending_ttl, machine_id)
  redis.call('HINCRBY', stats_key, 'hits', 1)
  result = {'leased', machine_id, epoch, redis.call('HGET', machine_key, 'address')}
else
  redis.call('HINCRBY', stats_key, 'misses', 1)
  local boot_key = p .. 'booting-sessions:' .. pool
  if redis.call('ZCARD', boot_key) >= ondemand_max then
    redis.call('INCR', demand_key)
    redis.call('EXPIRE', demand_key, 900)
    return {'empty'}
  end
  redis.call('ZADD', boot_key, now, session)
  result = {'boot'}
end

redis.call('SADD', user_key, session)
redis.call('SET', rate_key, new_tat, 'PX', new_tat - now + 1000)
redis.call('INCR', demand_key)
redis.call('EXPIRE', demand_key, 900)
return result
