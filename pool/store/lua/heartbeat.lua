-- Record that the lease holder is alive. A stale holder (older epoch) changes nothing.
-- KEYS: m:{machine}
-- ARGV: epoch
-- Returns 1 (recorded), 0 (the machine is no longer this lease's: another epoch or state),
-- -1 (Redis holds no record of the machine: lost with Redis, or the machine is gone)
local key, epoch = KEYS[1], ARGV[1]
local fields = redis.call('HMGET', key, 'state', 'epoch')
if not fields[1] then
  return -1
end
if fields[2] ~= epoch or fields[1] ~= 'leased' then
  return 0
end
local t = redis.call('TIME')
redis.call('HSET', key, 'heartbeat_at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
