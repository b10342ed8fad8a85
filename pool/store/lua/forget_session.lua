-- Drop a session that never got a machine from the user's live set and its boot slot.
-- KEYS: booting-sessions:{template}:{region}, user:{user}
-- ARGV: session
local boot_key, user_key, session = KEYS[1], KEYS[2], ARGV[1]
redis.call('ZREM', boot_key, session)
return redis.call('SREM', user_key, session)
