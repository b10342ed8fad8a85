-- Append one numbered patch to a session's edit stream and apply it to the session's snapshot,
-- atomically; publish it to the session channel.
-- ARGV: prefix, session, seq, changes_json, digest, maxlen, max_snapshot_bytes, max_files,
--       envelope_json (what to publish; the patch as the gateway frames it)
-- Returns {'ok', seq} | {'dup', seq} | {'conflict', head} | {'too_large', bytes}
--         | {'ended', reason} (the session ended: nothing is appended or acked, resends included)
local p, session, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local changes_json, digest = ARGV[4], ARGV[5]
local maxlen, max_bytes, max_files = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local envelope = ARGV[9]

local stream = p .. 'edits:' .. session
local snap = p .. 'snap:' .. session
local meta = p .. 'snapmeta:' .. session
local ended = redis.call('HGET', meta, 'ended')
if ended then
  return {'ended', ended}
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
-- A deletion is kept as a tombstone (a lone NUL, which no file content may contain): the
-- session's files are the template's plus the snapshot, so deleting a template file must be
-- remembered, not just forgotten.
local TOMBSTONE = '\0'
for _, change in ipairs(changes) do
  local old = redis.call('HSTRLEN', snap, change.path)
  local exists = redis.call('HEXISTS', snap, change.path) == 1
  local new = TOMBSTONE
  if not change.delete then new = change.content end
  bytes = bytes - old + string.len(new)
  if not exists then files = files + 1 end
end
if bytes > max_bytes or files > max_files then
  return {'too_large', bytes}
end
for _, change in ipairs(changes) do
  if change.delete then
    redis.call('HSET', snap, change.path, TOMBSTONE)
  else
    redis.call('HSET', snap, change.path, change.content)
  end
end
redis.call('HSET', meta, 'head', seq, 'bytes', bytes)
redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'changes', changes_json,
           'digest', digest)
-- Sliding expiry: an abandoned session's edits do not stay in Redis forever.
for _, key in ipairs({stream, snap, meta}) do redis.call('EXPIRE', key, 604800) end
redis.call('PUBLISH', p .. 'ch:session:' .. session, envelope)
return {'ok', seq}
