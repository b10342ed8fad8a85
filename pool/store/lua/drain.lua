-- Take up to `count` ready machines out of one tier's list: to destroy them (state 'draining',
-- shrinking) or to change them (state 'moving': into another tier).
-- ARGV: prefix, template, region, count, tier ('hot' when empty), state ('draining' when
--       empty), destination tier (for 'moving': the record's 'tier' becomes it)
-- Returns {machine_id, epoch, machine_id, epoch, ...}: the machines now in that state.
local p, template, region, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local tier = ARGV[5]
if not tier or tier == '' then tier = 'hot' end
local state = ARGV[6]
if not state or state == '' then state = 'draining' end
local destination = ARGV[7]
local pool = template .. ':' .. region
local list = tier == 'hot' and 'ready:' or ('ready-' .. tier .. ':')
local ready_key = p .. list .. pool
local t = redis.call('TIME')
local taken = {}
while #taken < count * 2 do
  -- LPOP: the newest machines go first; the oldest stay at the head of the lease queue.
  local candidate = redis.call('LPOP', ready_key)
  if not candidate then break end
  local key = p .. 'm:' .. candidate
  if redis.call('HGET', key, 'state') == 'ready' then
    local epoch = redis.call('HINCRBY', key, 'epoch', 1)
    redis.call('HSET', key, 'state', state, 'taken_at', t[1])
    if destination and destination ~= '' then
      redis.call('HSET', key, 'tier', destination)
    end
    taken[#taken + 1] = candidate
    taken[#taken + 1] = epoch
  end
end
return taken
