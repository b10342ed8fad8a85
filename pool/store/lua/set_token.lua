-- Keep the SHA-256 of a machine's new token (after a reset or a wake), on a record that exists:
-- a record Redis lost must not come back as this one field.
-- ARGV: prefix, machine_id, token_sha256
-- Returns 1 when written, 0 when the machine has no record.
local p, machine_id, digest = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'm:' .. machine_id
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'token_sha256', digest)
return 1
