-- Take up to `count` ready machines out of the pool for destruction (shrinking).
-- ARGV: prefix, template, region, count
-- Returns the machine ids now in state 'draining'.
local p, template, region, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ready_key = p .. 'ready:' .. template .. ':' .. region
local taken = {}
while #taken < count do
  -- LPOP: the newest machines go first; the oldest stay at the head of the lease queue.
  local candidate = redis.call('LPOP', ready_key)
  if not candidate then break end
  local key = p .. 'm:' .. candidate
  if redis.call('HGET', key, 'state') == 'ready' then
    redis.call('HINCRBY', key, 'epoch', 1)
    redis.call('HSET', key, 'state', 'draining')
    taken[#taken + 1] = candidate
  end
end
return taken
