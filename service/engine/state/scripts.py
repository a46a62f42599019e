"""The session store's two Lua scripts (atomic on the Redis server): COMMIT writes a batch, RESOLVE settles a commit
whose answer was lost.

A stored session is one hash: `v` (its version `<epoch>:<writes>`), `n` (its position: steps applied), `s` (the
state bytes), `o0..o15` (the last answers, native streams); an ended session's key is deleted. The version a step
writes names that step uniquely: an epoch is minted by every open, START, restore and fence of a session, and used
by that one session object only, so no two steps ever write the same version. That makes both scripts
idempotent: a commit that finds its own version stored was already applied (a retry, or a copy that arrived
late) and does nothing again.

COMMIT. KEYS: one per row. ARGV[1]: TTL in ms, ARGV[2]: answers kept, ARGV[3]: the most sessions stored (0: no
limit; counted with DBSIZE, so the store's database holds sessions only), ARGV[4]: one line per row, "expected
version ending position state-length answer-length" (ending 1: the session ends, its key is deleted, and a row
that ends a session already gone counts as applied: a retried END; answer length 0: no answer kept), ARGV[5] and
ARGV[6]: every row's state bytes, and every kept answer's bytes, one after the other, ARGV[7]: the TTL in ms of a
fence mark, ARGV[8]: the fraction of `maxmemory` beyond which a new session is refused (0: never), checked before
anything is written (Redis skips its own memory check once a script has written). An expected version of ANY
(open, START) clears the key first, unless a RESOLVE fenced that epoch off. Returns the refused rows only, as
pairs (row number from 1, why): FULL or MEMORY for a new session beyond a limit, FENCED for a fenced epoch, else
the stored version (ABSENT when missing).

RESOLVE. KEYS: one per row of the lost commit. ARGV[1]: one line per row, "expected version ending fence";
ARGV[2]: the TTL of a fence mark. Per row, what the lost commit did, made final: APPLIED if its version is stored
(or, for a row that ends its session, the key is gone); else FENCED after making sure it never applies later
(the stored version becomes `fence`, or for an ANY row its epoch is marked in `f`); else the stored version
(ABSENT when missing): another step or a flush came first.
"""

from __future__ import annotations

ANY = "*"  # expected version of a write that overwrites whatever is stored (open, START)
ABSENT = "-"  # stored version reported for a key that does not exist (ended, expired, never written)
FULL = "!"  # a new session refused: the store holds its limit of sessions (--max-stored-sessions)
MEMORY = "M"  # a new session refused: the store's Redis is near its maxmemory
FENCED = "~"  # the write was fenced off by a RESOLVE: never applied
APPLIED = "A"  # RESOLVE: the lost commit was applied
FENCE_MS = 120_000  # how long the fence mark of a new session's lost write stays

COMMIT = """
local ttl, keep, cap, frac = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[8])
local states, answers = ARGV[5], ARGV[6]
local out, i, s_at, a_at = {}, 0, 1, 1
local full = nil
local function memory_full()
  if full == nil then
    local info = redis.call('INFO', 'memory')
    local used = tonumber(string.match(info, 'used_memory:(%d+)'))
    local limit = tonumber(string.match(info, 'maxmemory:(%d+)'))
    full = limit > 0 and used >= limit * frac
  end
  return full
end
for expected, version, ending, position, slen, alen in
    string.gmatch(ARGV[4], '(%S+) (%S+) ([01]) (%d+) (%d+) (%d+)\\n') do
  i = i + 1
  local key = KEYS[i]
  local state = string.sub(states, s_at, s_at + slen - 1)
  s_at = s_at + slen
  local answer = nil
  if alen ~= '0' then
    answer = string.sub(answers, a_at, a_at + alen - 1)
    a_at = a_at + alen
  end
  local current = redis.call('HGET', key, 'v')
  local fresh = expected == '*'
  if current == version then
    -- already applied: a retried or late copy of this very step
  elseif fresh and redis.call('HGET', key, 'f') == string.match(version, '^(.*):') then
    out[#out + 1] = i
    out[#out + 1] = '~'
  elseif fresh and not current and cap > 0 and redis.call('DBSIZE') >= cap then
    out[#out + 1] = i
    out[#out + 1] = '!'
  elseif fresh and not current and frac > 0 and memory_full() then
    out[#out + 1] = i
    out[#out + 1] = 'M'
  elseif ending == '1' and not current and not fresh then
    -- already gone: a retried END
  elseif fresh or current == expected then
    if fresh or ending == '1' then
      redis.call('DEL', key)
    end
    if ending == '0' then
      if answer then
        local slot = 'o' .. ((tonumber(position) - 1) % keep)
        redis.call('HSET', key, 'v', version, 'n', position, 's', state, slot, answer)
      else
        redis.call('HSET', key, 'v', version, 'n', position, 's', state)
      end
      redis.call('PEXPIRE', key, ttl)
    end
  else
    out[#out + 1] = i
    out[#out + 1] = current or '-'
  end
end
return out
"""

RESOLVE = """
local out, i = {}, 0
for expected, version, ending, fence in string.gmatch(ARGV[1], '(%S+) (%S+) ([01]) (%S+)\\n') do
  i = i + 1
  local key = KEYS[i]
  local current = redis.call('HGET', key, 'v')
  if current == version then
    out[i] = 'A'
  elseif expected == '*' then
    local epoch = string.match(version, '^(.*):')
    if redis.call('HGET', key, 'f') ~= epoch then
      local existed = redis.call('EXISTS', key)
      redis.call('HSET', key, 'f', epoch)
      if existed == 0 then
        redis.call('PEXPIRE', key, tonumber(ARGV[2]))
      end
    end
    out[i] = '~'
  elseif current == fence then
    out[i] = '~'
  elseif current == expected then
    redis.call('HSET', key, 'v', fence)
    out[i] = '~'
  elseif not current and ending == '1' then
    out[i] = 'A'
  else
    out[i] = current or '-'
  end
end
return out
"""
