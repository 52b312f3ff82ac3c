"""The server-side scripts: each is one round trip, on Redis's clock (``TIME``).

``ACQUIRE`` is :mod:`.window`'s rule over one hash per limit: fields
``r<bucket>`` and ``t<bucket>`` hold a bucket's requests and tokens. Stale
buckets are deleted as they are met, and the key expires a window after its
last use, so an idle limit costs nothing. ``BOARD`` writes this process's row
stamped with the server's time, drops rows older than the TTL, and returns
the others'. Nothing here trusts a client clock, so processes whose clocks
disagree still share one window.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "BOARD", "RELEASE", "RESERVE", "SETTLE"]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

# KEYS[1]: the limit's hash. ARGV: max requests (0: none), max tokens (0: none),
# window (ms), cost (tokens). Returns {admitted, wait_ms, requests, tokens, bucket}.
ACQUIRE = (
    _NOW
    + """
local key = KEYS[1]
local max_requests = tonumber(ARGV[1])
local max_tokens = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local width = window / 60
local current = math.floor(now / width)
local oldest = current - 60
local flat = redis.call('HGETALL', key)
local requests, tokens = 0, 0
local buckets, stale = {}, {}
for i = 1, #flat, 2 do
  local field = flat[i]
  local bucket = tonumber(string.sub(field, 2))
  local value = tonumber(flat[i + 1])
  if bucket < oldest then
    stale[#stale + 1] = field
  else
    local entry = buckets[bucket]
    if not entry then
      entry = {0, 0}
      buckets[bucket] = entry
    end
    if string.sub(field, 1, 1) == 'r' then
      entry[1] = entry[1] + value
      requests = requests + value
    else
      entry[2] = entry[2] + value
      tokens = tokens + value
    end
  end
end
if #stale > 0 then
  redis.call('HDEL', key, unpack(stale))
end
local function fits(r, t)
  if max_requests > 0 and r + 1 > max_requests then return false end
  if max_tokens > 0 and t > 0 and t + cost > max_tokens then return false end
  return true
end
if fits(requests, tokens) then
  redis.call('HINCRBY', key, 'r' .. current, 1)
  if cost > 0 then
    redis.call('HINCRBY', key, 't' .. current, cost)
  end
  redis.call('PEXPIRE', key, math.ceil(window + 2 * width))
  return {1, 0, requests + 1, tokens + cost, current}
end
local ids = {}
for bucket in pairs(buckets) do
  ids[#ids + 1] = bucket
end
table.sort(ids)
local wait, r, t = 0, requests, tokens
for _, bucket in ipairs(ids) do
  if fits(r, t) then break end
  r = r - buckets[bucket][1]
  t = t - buckets[bucket][2]
  wait = (bucket + 61) * width - now
end
return {0, math.max(1, math.ceil(wait)), requests, tokens, current}
"""
)

# KEYS[1]: the limit's hash. ARGV: window (ms), the real tokens to count now,
# then pairs of (bucket, estimate) to take back from buckets still kept.
# Settlements are batched: one call per limit per board interval.
SETTLE = (
    _NOW
    + """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local field = 't' .. ARGV[i]
  if redis.call('HEXISTS', key, field) == 1 then
    redis.call('HINCRBY', key, field, -tonumber(ARGV[i + 1]))
  end
end
if tokens > 0 then
  local current = math.floor(now / (window / 60))
  redis.call('HINCRBY', key, 't' .. current, tokens)
  redis.call('PEXPIRE', key, math.ceil(window + window / 30))
end
return 1
"""
)

# KEYS[1]: the board hash. ARGV: member, row (JSON), ttl (ms). Returns the
# other live members' rows.
BOARD = (
    _NOW
    + """
local key = KEYS[1]
local member = ARGV[1]
local ttl = tonumber(ARGV[3])
redis.call('HSET', key, member, string.format('%d', now) .. ' ' .. ARGV[2])
local flat = redis.call('HGETALL', key)
local rows, stale = {}, {}
for i = 1, #flat, 2 do
  local value = flat[i + 1]
  local space = string.find(value, ' ', 1, true)
  local at = tonumber(string.sub(value, 1, space - 1))
  if now - at > ttl then
    stale[#stale + 1] = flat[i]
  elseif flat[i] ~= member then
    rows[#rows + 1] = string.sub(value, space + 1)
  end
end
if #stale > 0 then
  redis.call('HDEL', key, unpack(stale))
end
redis.call('PEXPIRE', key, ttl * 10)
return rows
"""
)

# KEYS[1]: one budget period's hash (fields ``spent``, ``reserved``). ARGV:
# amount, cap ("" for none), seed, ttl (ms). :mod:`.periods`'s rule. Floats
# travel as strings: Redis would truncate a Lua number to an integer.
# Returns {admitted, spent, reserved, amount}.
RESERVE = """
local key = KEYS[1]
local amount = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local ttl = tonumber(ARGV[4])
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'spent', ARGV[3], 'reserved', '0')
end
local spent = tonumber(redis.call('HGET', key, 'spent'))
local reserved = tonumber(redis.call('HGET', key, 'reserved'))
redis.call('PEXPIRE', key, ttl)
if cap then
  local headroom = cap - spent - reserved
  if headroom <= 0 then
    return {0, tostring(spent), tostring(reserved), '0'}
  end
  if amount > headroom then amount = headroom end
end
reserved = tonumber(redis.call('HINCRBYFLOAT', key, 'reserved', tostring(amount)))
return {1, tostring(spent), tostring(reserved), tostring(amount)}
"""

# KEYS[1]: the period's hash. ARGV: the amount reserved, the real cost. A
# counter that expired (or a Redis that restarted) is not brought back.
RELEASE = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  return 0
end
local reserved = tonumber(redis.call('HINCRBYFLOAT', key, 'reserved', '-' .. ARGV[1]))
if reserved < 0 then
  redis.call('HSET', key, 'reserved', '0')
end
redis.call('HINCRBYFLOAT', key, 'spent', ARGV[2])
return 1
"""
