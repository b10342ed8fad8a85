-- Append one numbered patch to a session's edit stream and apply it to the session's snapshot,
-- atomically; publish it to the session channel.
-- KEYS: edits:{session}, snap:{session}, snapmeta:{session}, editbytes:{user} (with a user)
-- ARGV: prefix, session, seq, changes_json, digest, maxlen, max_snapshot_bytes, max_files,
--       envelope_json (what to publish; the patch as the gateway frames it),
--       epoch (the edit log's identity the editor numbered this patch under; '' for any),
--       fresh_epoch (a new random identity, used when the log has none: it was lost or is new),
--       max_stream_bytes, user ('' for none), user_budget (bytes over all the user's sessions),
--       channel (ch:session:{session})
-- The prefix: the user's other sessions (snapmeta:{other}) are named by the budget's fields.
-- Returns {'ok', seq} | {'dup', seq} | {'conflict', head} | {'too_large', bytes}
--         | {'over_budget', bytes} (the user's sessions would hold more than their budget)
--         | {'ended', reason} (the session ended: nothing is appended or acked, resends included)
--         | {'epoch', current} (the log is not the one the editor numbered against: Redis lost
--           it, so the seq means nothing here; the editor must resync and re-send its files)
local p, session, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local changes_json, digest = ARGV[4], ARGV[5]
local maxlen, max_bytes, max_files = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local envelope = ARGV[9]
local epoch, fresh_epoch = ARGV[10], ARGV[11]
local max_stream_bytes, user, user_budget = tonumber(ARGV[12]), ARGV[13], tonumber(ARGV[14])
local channel = ARGV[15]
local TTL = 604800

local stream, snap, meta = KEYS[1], KEYS[2], KEYS[3]
local ended = redis.call('HGET', meta, 'ended')
if ended then
  return {'ended', ended}
end
local current = redis.call('HGET', meta, 'epoch')
if not current then
  -- No identity: the session's log is gone (a store reset) or was never started. Start a new
  -- one, so that every socket that still holds the old identity notices.
  current = fresh_epoch
  redis.call('HSET', meta, 'epoch', current)
  redis.call('EXPIRE', meta, TTL)
end
if epoch ~= '' and current ~= epoch then
  return {'epoch', current}
end
local head = tonumber(redis.call('HGET', meta, 'head') or '0')

if seq <= head then
  -- A resend of an appended patch is acknowledged again; anything else at that seq conflicts.
  local entry = redis.call('XRANGE', stream, seq .. '-0', seq .. '-0')
  if entry[1] and entry[1][2][4] == digest then
    return {'dup', seq}
  end
  return {'conflict', head}
end
if seq ~= head + 1 then
  return {'conflict', head}
end

local changes = cjson.decode(changes_json)
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
local files = redis.call('HLEN', snap)
-- A deletion is kept as a tombstone (a lone NUL, which no text content may contain): the
-- session's files are the template's plus the snapshot, so deleting a template file must be
-- remembered, not just forgotten. A binary file is its base64 behind a mark that starts with
-- NUL too (pool.edits.edit_log.BINARY_MARK). Sizes count the values as stored.
local TOMBSTONE = '\0'
local BINARY_MARK = '\0base64:'
local function stored(change)
  if change.delete then return TOMBSTONE end
  if change.encoding == 'base64' then return BINARY_MARK .. change.content end
  return change.content
end
for _, change in ipairs(changes) do
  local old = redis.call('HSTRLEN', snap, change.path)
  local exists = redis.call('HEXISTS', snap, change.path) == 1
  bytes = bytes - old + string.len(stored(change))
  if not exists then files = files + 1 end
end
if bytes > max_bytes or files > max_files then
  return {'too_large', bytes}
end
-- The stream is bounded in bytes as well as entries (oldest first, the newest always kept).
-- The user's budget counts every live session's snapshot and stream: a user cannot hold more
-- than it in Redis however many sessions they open one after another. Checked against the
-- stream's bound before trimming, so a refusal never depends on what trimming would free.
local entry_bytes = string.len(changes_json)
local stream_bytes = tonumber(redis.call('HGET', meta, 'stream_bytes') or '0') + entry_bytes
local user_key = nil
local user_total = 0
if user ~= '' then
  user_key = KEYS[4]
  -- The user's other sessions, each while its log is alive and not ended: an entry whose end
  -- never reached it (Redis was down then) or whose log expired counts for nothing and goes.
  local held = redis.call('HGETALL', user_key)
  for i = 1, #held, 2 do
    local other, size = held[i], tonumber(held[i + 1])
    if other ~= session then
      local other_meta = p .. 'snapmeta:' .. other
      if redis.call('EXISTS', other_meta) == 1 and redis.call('HEXISTS', other_meta, 'ended') == 0 then
        user_total = user_total + size
      else
        redis.call('HDEL', user_key, other)
      end
    end
  end
  local after = user_total + bytes + math.min(stream_bytes, max_stream_bytes)
  if after > user_budget then
    return {'over_budget', after}
  end
end
for _, change in ipairs(changes) do
  redis.call('HSET', snap, change.path, stored(change))
end
redis.call('XADD', stream, seq .. '-0', 'changes', changes_json, 'digest', digest,
           'bytes', entry_bytes)
while true do
  local entries = redis.call('XLEN', stream)
  if entries <= 1 or (entries <= maxlen and stream_bytes <= max_stream_bytes) then break end
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  -- Entries written before the byte bound have no 'bytes' field: measure them.
  local size = tonumber(oldest[2][6]) or string.len(oldest[2][2])
  redis.call('XDEL', stream, oldest[1])
  stream_bytes = math.max(0, stream_bytes - size)
end
redis.call('HSET', meta, 'head', seq, 'bytes', bytes, 'stream_bytes', stream_bytes)
-- Sliding expiry: an abandoned session's edits do not stay in Redis forever.
for _, key in ipairs({stream, snap, meta}) do redis.call('EXPIRE', key, TTL) end
if user_key then
  redis.call('HSET', meta, 'user', user)
  redis.call('HSET', user_key, session, bytes + stream_bytes)
  redis.call('EXPIRE', user_key, TTL)
end
redis.call('PUBLISH', channel, envelope)
return {'ok', seq}
