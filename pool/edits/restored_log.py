"""A new session's edit log that starts from files an ended session left (its project's last
files, pool.services.project_files).

The values are an ended session's snapshot hash, copied verbatim (contents, tombstones, whatever
the edit log stores a binary file as): they become the new session's snapshot as they are, in
one script together with the log's identity. The log gets a new epoch whose head is
RESTORED_SEQ with no stream entry behind it, so an editor that says `hello {lastSeq: 0}` is sent
a `snapshot` and the machine's agent a `hydrate` (the stream cannot give them seq 1), and the
first patch is numbered RESTORED_SEQ + 1. The files count against the snapshot's caps and the
user's budget exactly as appended ones would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from pool.edits.edit_log import EditLogLimits, OverBudget, TooLarge, new_epoch
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.redis_errors import resolved, translated_redis_errors

RESTORED_SEQ = 1
# What append_patch.lua gives a log: an abandoned one expires this long after its last write.
LOG_TTL_SECONDS = 604_800


@dataclass(frozen=True)
class Seeded:
    seq: int
    bytes: int


@dataclass(frozen=True)
class LogExists:
    """The session already has a log: nothing was written (a restore only starts a new one)."""


SeedOutcome = Seeded | TooLarge | OverBudget | LogExists

# KEYS: snap:{session}, snapmeta:{session}, editbytes:{user} (with a user).
# ARGV: prefix, session, epoch, seq, max_bytes, max_files, ttl, user ('' for none), user_budget,
#       then path, value, path, value, ...
# The prefix: the user's other sessions (snapmeta:{other}) are named by the budget's fields.
# Returns {'ok', bytes} | {'exists'} | {'too_large', bytes} | {'over_budget', bytes}.
_SEED = """
local snap, meta = KEYS[1], KEYS[2]
local p, session, epoch, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_bytes, max_files, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local user, user_budget = ARGV[8], tonumber(ARGV[9])
local FIRST = 10
if redis.call('EXISTS', meta) == 1 or redis.call('EXISTS', snap) == 1 then
  return {'exists'}
end
local bytes, files = 0, 0
for i = FIRST, #ARGV, 2 do
  bytes = bytes + string.len(ARGV[i + 1])
  files = files + 1
end
if bytes > max_bytes or files > max_files then
  return {'too_large', bytes}
end
local user_key = nil
if user ~= '' then
  -- As append_patch.lua counts it: the user's other sessions whose logs are alive and live.
  user_key = KEYS[3]
  local total = bytes
  local held = redis.call('HGETALL', user_key)
  for i = 1, #held, 2 do
    local other_meta = p .. 'snapmeta:' .. held[i]
    if held[i] ~= session and redis.call('EXISTS', other_meta) == 1
        and redis.call('HEXISTS', other_meta, 'ended') == 0 then
      total = total + tonumber(held[i + 1])
    end
  end
  if total > user_budget then
    return {'over_budget', total}
  end
end
for i = FIRST, #ARGV, 2 do
  redis.call('HSET', snap, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', meta, 'epoch', epoch, 'head', seq, 'bytes', bytes, 'stream_bytes', 0,
           'restored', seq)
if user_key then
  redis.call('HSET', meta, 'user', user)
  redis.call('HSET', user_key, session, bytes)
  redis.call('EXPIRE', user_key, ttl)
end
redis.call('EXPIRE', snap, ttl)
redis.call('EXPIRE', meta, ttl)
return {'ok', bytes}
"""


async def start_log_from(
    redis: Redis,
    session_id: str,
    values: Mapping[str, str],
    *,
    user: str = "",
    limits: EditLogLimits | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> SeedOutcome:
    """Start the session's log with `values` as its snapshot at RESTORED_SEQ, under a new epoch;
    all or nothing. `user`: whose budget the files count against ("" for none)."""
    limits = limits or EditLogLimits()
    keys = Keys(prefix)
    script_keys = [keys.snapshot(session_id), keys.snapshot_meta(session_id)]
    if user:
        script_keys.append(keys.edit_bytes(user))
    args: list[str | int] = [
        prefix,
        session_id,
        new_epoch(),
        RESTORED_SEQ,
        limits.snapshot_bytes,
        limits.snapshot_files,
        LOG_TTL_SECONDS,
        user,
        limits.user_budget_bytes,
    ]
    for path, value in values.items():
        args += (path, value)
    async with translated_redis_errors():
        result = await redis.register_script(_SEED)(keys=script_keys, args=args)
    match result:
        case ["ok", size]:
            return Seeded(RESTORED_SEQ, int(size))
        case ["exists"]:
            return LogExists()
        case ["too_large", size]:
            return TooLarge(int(size))
        case ["over_budget", size]:
            return OverBudget(int(size))
    raise AssertionError(f"unexpected seed result {result!r}")


async def restored_seq(redis: Redis, session_id: str, *, prefix: str = DEFAULT_PREFIX) -> int:
    """The seq at which the session's log was started from kept files (0: it was not)."""
    async with translated_redis_errors():
        value = await resolved(redis.hget(Keys(prefix).snapshot_meta(session_id), "restored"))
    return int(value or 0)
