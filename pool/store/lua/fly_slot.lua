-- Reserve the next request slot of a Fly API budget shared by every process (GCRA, in the
-- reservation style of pool/providers/fly_ratelimit.py: the slot is always taken, and the
-- answer is how long the caller waits for it). One key per (action, scope).
-- ARGV: prefix, action, scope, interval_us (one request per), burst
-- Returns the wait in microseconds (0: go now).
local p, action, scope = ARGV[1], ARGV[2], ARGV[3]
local interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local key = p .. 'fly-rate:' .. action .. ':' .. scope
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- The theoretical arrival time of the next request; a bucket left alone is full.
local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
local wait = math.max(tat - (burst - 1) * interval - now, 0)
local new_tat = tat + interval
redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
