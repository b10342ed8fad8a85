-- Take one ready machine, by id, out of its tier's list for a change (state 'moving'): a
-- rolling resize, or a move to another tier.
-- KEYS: m:{machine}
-- ARGV: prefix, machine_id, destination tier ('' keeps the machine's tier)
-- The prefix: the ready list to leave is named by the record's template, region and tier.
-- Returns {epoch, tier it was in}, or {} when the machine is not ready (leased, moving, gone):
-- then nothing is written.
local key = KEYS[1]
local p, machine_id, destination = ARGV[1], ARGV[2], ARGV[3]
local fields = redis.call('HMGET', key, 'state', 'template', 'region', 'tier')
if fields[1] ~= 'ready' then return {} end
local tier = fields[4] or 'hot'
local list = tier == 'hot' and 'ready:' or ('ready-' .. tier .. ':')
redis.call('LREM', p .. list .. fields[2] .. ':' .. fields[3], 0, machine_id)
local epoch = redis.call('HINCRBY', key, 'epoch', 1)
local t = redis.call('TIME')
redis.call('HSET', key, 'state', 'moving', 'taken_at', t[1])
if destination ~= '' then
  redis.call('HSET', key, 'tier', destination)
end
return {epoch, tier}
