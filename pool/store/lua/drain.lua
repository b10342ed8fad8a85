-- Take up to `count` ready machines out of one tier's list: to destroy them (state 'draining',
-- shrinking) or to change them (state 'moving': into another tier).
-- KEYS: the ready list of the tier
-- ARGV: prefix, count, state ('draining' when empty), destination tier (for 'moving': the
--       record's 'tier' becomes it)
-- The prefix: the records are those of the ids popped from the list.
-- Returns {machine_id, epoch, machine_id, epoch, ...}: the machines now in that state.
local ready_key = KEYS[1]
local p, count = ARGV[1], tonumber(ARGV[2])
local state = ARGV[3]
if not state or state == '' then state = 'draining' end
local destination = ARGV[4]
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
