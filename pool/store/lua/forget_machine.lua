-- Remove every trace of a machine from the pool (it was destroyed or is dead).
-- KEYS: m:{machine}, pending
-- ARGV: prefix, machine_id
-- The prefix: the lists, the pool's set and the user's set are named by fields of the record.
-- Returns the state it was in ('' when unknown).
local key, pending_key = KEYS[1], KEYS[2]
local p, machine_id = ARGV[1], ARGV[2]
local fields = redis.call('HMGET', key, 'state', 'template', 'region', 'session', 'user')
if not fields[1] then return '' end
local pool = fields[2] .. ':' .. fields[3]
for _, list in ipairs({'ready:', 'ready-suspended:', 'ready-stopped:'}) do
  redis.call('LREM', p .. list .. pool, 0, machine_id)
end
redis.call('SREM', p .. 'machines:' .. pool, machine_id)
redis.call('ZREM', pending_key, machine_id)
if fields[4] and fields[5] then
  redis.call('SREM', p .. 'user:' .. fields[5], fields[4])
end
redis.call('DEL', key)
return fields[1]
