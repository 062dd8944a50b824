--[[
Give Redis back one decision read from the decisions topic (pressure/restore.py builds the arguments).

Idempotent: when the send id's record is still (or again) in Redis nothing is written, so
a rebuild may run over customers whose keys survived, and more than once. Writes what
gate.lua would have written for the decision, with the expiries it would have set.

KEYS (one customer's hash tag: one cluster slot)
  1 sent    the send id's decision record
  2 spent   calendar: the period's sum; rolling: the window zset
  3 spends  the period's send_id -> spend record hash
  4 lock    calamity lock end (ms)
  5 arb     priority -> last approval (ms)

ARGV[1] JSON array:
  [1] record (stored verbatim under KEYS[1])   [2] approved (0/1)   [3] rolling (0/1)
  [4] decided at (ms)   [5] cost (hundredths)   [6] spend record   [7] send id
  [8] TTL (ms) of the record and the period keys   [9] now (ms)
  [10] lock end (ms, 0 = none)   [11] arbitration priority (0 = none)   [12] arbitration end (ms)

Returns 1 when the decision was written back, 0 when Redis already had it.
]]

local K_SENT, K_SPENT, K_SPENDS, K_LOCK, K_ARB = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local a = cjson.decode(ARGV[1])
local record, approved, rolling, at, cost = a[1], a[2] == 1, a[3] == 1, a[4], a[5]
local spend, send_id, ttl, now = a[6], a[7], a[8], a[9]
local lock_until, arb_priority, arb_until = a[10], a[11], a[12]

if not redis.call('SET', K_SENT, record, 'NX', 'PX', ttl) then
  return 0
end
if not approved then
  return 1
end

-- Keep the longer of the key's expiry and ttl (no expiry yet: PTTL says -1).
local function expire_at_least(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

if rolling then
  redis.call('ZADD', K_SPENT, at, send_id)
else
  redis.call('INCRBY', K_SPENT, cost)
end
redis.call('HSET', K_SPENDS, send_id, spend)
expire_at_least(K_SPENT, ttl)
expire_at_least(K_SPENDS, ttl)

if lock_until > now then
  local current = tonumber(redis.call('GET', K_LOCK)) or 0
  if lock_until > current then
    redis.call('SET', K_LOCK, lock_until, 'PX', lock_until - now)
  end
end
if arb_priority > 0 and arb_until > now then
  local last = tonumber(redis.call('HGET', K_ARB, arb_priority)) or 0
  if at > last then
    redis.call('HSET', K_ARB, arb_priority, at)
  end
  expire_at_least(K_ARB, arb_until - now)
end
return 1
