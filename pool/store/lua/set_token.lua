-- Keep the SHA-256 of a machine's new token (after a reset or a wake), on a record that exists:
-- a record Redis lost must not come back as this one field.
-- KEYS: m:{machine}
-- ARGV: token_sha256
-- Returns 1 when written, 0 when the machine has no record.
local key, digest = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'token_sha256', digest)
return 1
