-- Lease one ready machine for (template, region), atomically with the user's quota checks.
-- Tiers are tried fastest first: hot (started), then suspended, then stopped; only then is an
-- on-demand boot slot reserved.
-- KEYS: user:{user}, rate:{user}, stats:{pool}, the ready lists (hot, suspended, stopped),
--       pending, booting-sessions:{pool}
-- ARGV: prefix, template, region, user, session, pending_ttl_ms, max_concurrent,
--       emission_interval_ms, burst, ondemand_max
-- The prefix: a candidate's record and channel are named by the id popped from a list, and
-- the demand bucket by Redis' clock (demand:{pool}:{bucket}, ch:machine:{machine}, m:{machine}).
-- Returns {outcome, ...}:
--   {'leased', machine_id, epoch, address, tier}
--                                            a pending lease; promote it after the Postgres
--                                            commit. A suspended or stopped machine must be
--                                            woken (started) before the session can use it.
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

local user_key, rate_key, stats_key = KEYS[1], KEYS[2], KEYS[3]
local pending_key, boot_key = KEYS[7], KEYS[8]
if redis.call('SCARD', user_key) >= max_concurrent then
  return {'quota', 30000}
end

-- GCRA: the theoretical arrival time advances by one emission interval per creation;
-- a request is allowed while it is at most `burst` intervals ahead of now.
local tat = tonumber(redis.call('GET', rate_key) or '0')
if tat < now then tat = now end
local new_tat = tat + emission
local wait = new_tat - now - emission * burst
if wait > 0 then
  return {'rate', wait}
end

local demand_key = p .. 'demand:' .. pool .. ':' .. math.floor(now / 10000)

local lists = {{'hot', KEYS[4]}, {'suspended', KEYS[5]}, {'stopped', KEYS[6]}}
local machine_id = false
local machine_key
local tier
local unreachable = {}
for _, list in ipairs(lists) do
  while true do
    local candidate = redis.call('RPOP', list[2])
    if not candidate then break end
    machine_key = p .. 'm:' .. candidate
    -- A list entry whose machine is no longer ready (drained, moved, forgotten) is dropped here.
    local fields = redis.call('HMGET', machine_key, 'state', 'tier', 'agent')
    if fields[1] == 'ready' then
      -- The health check: a machine whose agent was connected when it became ready (`agent`)
      -- and whose channel has no subscriber now (the gateway's socket for that agent closed:
      -- the agent died or lost its network) is not leased. It goes back to the far end of its
      -- list; reconcile replaces it if the agent stays away.
      local gone = false
      if fields[3] then
        -- pcall: a Redis that refuses PUBSUB in scripts leases without the check.
        local subscribers = redis.pcall('PUBSUB', 'NUMSUB', p .. 'ch:machine:' .. candidate)
        gone = type(subscribers) == 'table' and subscribers[2] == 0
      end
      if gone then
        redis.call('HSETNX', machine_key, 'agent_lost_at', t[1])
        unreachable[#unreachable + 1] = {list[2], candidate}
      else
        machine_id = candidate
        -- The record says what the machine is (a record from before tiers has none: hot).
        tier = fields[2] or list[1]
        break
      end
    end
  end
  if machine_id then break end
end
for _, skipped in ipairs(unreachable) do
  redis.call('LPUSH', skipped[1], skipped[2])
end

local result
if machine_id then
  local epoch = redis.call('HINCRBY', machine_key, 'epoch', 1)
  -- The machine keeps its 'tier' field, so a lease that never commits goes back to that list.
  redis.call('HSET', machine_key, 'state', 'pending', 'session', session, 'user', user,
             'pending_until', now + pending_ttl, 'leased_at', now)
  -- Its agent is there (checked above): an absence noted while it was ready is over, and must
  -- not count against the session (reconcile fails a leased machine whose agent stays away).
  redis.call('HDEL', machine_key, 'agent_lost_at')
  redis.call('ZADD', pending_key, now + pending_ttl, machine_id)
  redis.call('HINCRBY', stats_key, 'hits', 1)
  if tier ~= 'hot' then
    redis.call('HINCRBY', stats_key, 'hits_' .. tier, 1)
  end
  result = {'leased', machine_id, epoch, redis.call('HGET', machine_key, 'address'), tier}
else
  redis.call('HINCRBY', stats_key, 'misses', 1)
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
