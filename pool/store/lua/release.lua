-- End a lease: the machine goes to 'recycling' (a used machine is never handed out unreset),
-- or, with return_to_ready = 1, straight back to the pool (only for a pending lease that no
-- user ever saw: a failed commit or a reclaim). The epoch is bumped either way, so the old
-- holder is fenced off.
-- KEYS: m:{machine}, pending
-- ARGV: prefix, machine_id, epoch, return_to_ready
-- The prefix: the user's set and the ready list are named by fields of the record.
-- Returns 'ok', or 'stale' when epoch is not the machine's current one.
local key, pending_key = KEYS[1], KEYS[2]
local p, machine_id, epoch, return_to_ready = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fields = redis.call('HMGET', key, 'state', 'epoch', 'session', 'user', 'template', 'region',
                          'tier')
local state, current, session, user = fields[1], fields[2], fields[3], fields[4]
if current ~= epoch or (state ~= 'pending' and state ~= 'leased') then
  return 'stale'
end
if session then
  redis.call('SREM', p .. 'user:' .. user, session)
end
redis.call('ZREM', pending_key, machine_id)
redis.call('HINCRBY', key, 'epoch', 1)
redis.call('HDEL', key, 'session', 'user', 'pending_until', 'leased_at', 'heartbeat_at')
if return_to_ready == '1' and state == 'pending' then
  redis.call('HSET', key, 'state', 'ready')
  -- Back to the list of the tier it was taken from (a suspended machine was never woken).
  -- RPUSH: it was ready a moment ago, so it goes to the front of the queue (lease pops RPOP).
  local tier = fields[7]
  local list = (tier and tier ~= 'hot') and ('ready-' .. tier .. ':') or 'ready:'
  redis.call('RPUSH', p .. list .. fields[5] .. ':' .. fields[6], machine_id)
else
  -- taken_at: when the machine left service; reconcile heals a recycle whose worker died.
  redis.call('HSET', key, 'state', 'recycling', 'taken_at', redis.call('TIME')[1])
end
return 'ok'
