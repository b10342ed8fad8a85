-- Set a machine's timestamp field to now (Redis TIME, seconds), or clear it, only while the
-- machine is in `state` (at `epoch`, unless it is ''): a recycle job claiming its machine
-- (taken_at), reconcile noting that a ready machine's agent is connected (agent), gone
-- (agent_lost_at) or back (clear agent_lost_at). A machine that moved on is left alone, and a
-- record that is gone is not recreated.
-- KEYS: m:{machine}
-- ARGV: state, epoch, field, 'set' | 'clear'
-- Returns the timestamp written (0 for a clear), or -1 when the machine is not in that state.
local key = KEYS[1]
local state, epoch, field, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fields = redis.call('HMGET', key, 'state', 'epoch')
if fields[1] ~= state or (epoch ~= '' and fields[2] ~= epoch) then return -1 end
if mode == 'clear' then
  redis.call('HDEL', key, field)
  return 0
end
local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', key, field, now)
return now
