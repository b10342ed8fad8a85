-- Drop a session that never got a machine from the user's live set and its boot slot.
-- ARGV: prefix, template, region, session, user
local p, template, region, session, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('ZREM', p .. 'booting-sessions:' .. template .. ':' .. region, session)
return redis.call('SREM', p .. 'user:' .. user, session)
