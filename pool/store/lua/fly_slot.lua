-- Reserve the next request slot of a Fly API budget shared by every process (GCRA, in the
-- reservation style of pool/providers/fly_ratelimit.py: the slot is always taken, and the
-- answer is how long the caller waits for it). One key per (action, scope).
-- KEYS: fly-rate:{action}:{scope}
-- ARGV: interval_us (one request per), burst
-- Returns the wait in microseconds (0: go now).
local key = KEYS[1]
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- The theoretical arrival time of the next request; a bucket left alone is full.
local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
local wait = math.max(tat - (burst - 1) * interval - now, 0)
local new_tat = tat + interval
redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
