--[[
The contact-pressure gate: one atomic decision for one outbound send.

The rules and their order are documented in orchestrator/pressure/policy.py; the
in-memory twin (orchestrator/pressure/memory.py, MemoryBasket._decide) follows this
script step by step. Change both together: a differential test compares them.

All policy arithmetic and time-zone math happen in Python (planner.GatePlanner); this
script only reads and writes the customer's state. Amounts are integer hundredths of
a point, times are epoch milliseconds, so Lua and Python add the same integers.

KEYS (all carry the same {customer} hash tag, so one slot in Redis Cluster)
  1 sent      string  decision record of this send id (JSON array)     TTL period end + margin
  2 supp      set     suppressions: 'sms', 'all', 'sms@brand', 'all@brand'  no TTL (consent)
  3 lock      string  calamity lock end (ms)                            TTL until the lock ends
  4 arb       hash    priority -> last approval (ms)                    TTL arbitration window
  5 spent     calendar: string, points spent in the period              TTL period end + margin
              rolling:  zset send_id -> spend time (ms)                 TTL window + margin
  6 spends    hash    send_id -> 'at|cost|priority|type|channel|brand'  same TTL as 5

ARGV[1] is one JSON array (one argument keeps the client's per-call packing cheap):
  [1] now_ms   [2] period kind ('calendar_month' | 'rolling')   [3] period id
  [4] period end (ms, calendar)   [5] window (ms, rolling)
  [6] cost   [7] limit (capacity after the priority reserve)   [8] capacity
  [9] is calamity (0/1)   [10] blocked by a calamity lock (0/1)   [11] capacity-exempt (0/1)
  [12] lock duration (ms)   [13] arbitration window (ms, 0 = off)   [14] priority (1..10)
  [15] comm type   [16] channel   [17] brand ('' = none)   [18] TTL (ms) for period keys and the decision
  [19] spend record   [20] send id

Returns {replayed (0/1), record} where record is the JSON array
  [outcome, code, cost, balance, limit, capacity, retry_ms, detail, period]
and is stored verbatim under KEYS[1].

Cost: O(1) for a calendar month (one SMISMEMBER, a few GET/HMGET, INCRBY, HSET).
A rolling period also reads the window (O(log n + m), m = live spends).
]]

local K_SENT, K_SUPP, K_LOCK, K_ARB, K_SPENT, K_SPENDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

local args = cjson.decode(ARGV[1])
local now, kind, period, period_end, window_ms = args[1], args[2], args[3], args[4], args[5]
local cost, limit, capacity = args[6], args[7], args[8]
local is_calamity, blocked_by_lock, exempt = args[9] == 1, args[10] == 1, args[11] == 1
local lock_ms, arb_ms, priority = args[12], args[13], args[14]
local comm_type, channel, brand, ttl = args[15], args[16], args[17], args[18]
local spend_record, send_id = args[19], args[20]
local rolling = kind == 'rolling'

-- Call a variadic command on `list` in chunks (Lua's unpack has a stack limit).
local function chunked(cmd, key, list)
  local out = {}
  for i = 1, #list, 1000 do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end

-- The cost field of an 'at|cost|...' spend record.
local function record_cost(rec)
  if not rec then return 0 end
  local _, c = string.match(rec, '^([^|]*)|([^|]*)')
  return tonumber(c) or 0
end

-- 1. Replay: the same send id gets the same answer and never spends twice.
local stored = redis.call('GET', K_SENT)
if stored then
  return {1, stored}
end

-- Current balance. Rolling: drop spends that left the window, keep the rest oldest first.
local balance = 0
local window = {}  -- {at, cost} oldest first (rolling only)
if rolling then
  local horizon = now - window_ms
  local expired = redis.call('ZRANGEBYSCORE', K_SPENT, '-inf', horizon)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', K_SPENT, '-inf', horizon)
    chunked('HDEL', K_SPENDS, expired)
  end
  local live = redis.call('ZRANGE', K_SPENT, 0, -1, 'WITHSCORES')
  local ids = {}
  for i = 1, #live, 2 do ids[#ids + 1] = live[i] end
  local records = #ids > 0 and chunked('HMGET', K_SPENDS, ids) or {}
  for i = 1, #ids do
    local c = record_cost(records[i])
    balance = balance + c
    window[#window + 1] = {tonumber(live[2 * i]), c}
  end
else
  balance = tonumber(redis.call('GET', K_SPENT)) or 0
end

-- Store and return a decision record.
local function finish(outcome, code, bal, retry, detail)
  local record = cjson.encode({outcome, code, cost, bal, limit, capacity, retry, detail, period})
  redis.call('SET', K_SENT, record, 'PX', ttl)
  return {0, record}
end

-- 2. Suppression: most specific member first.
local candidates
if brand ~= '' then
  candidates = {channel .. '@' .. brand, 'all@' .. brand, channel, 'all'}
else
  candidates = {channel, 'all'}
end
local hits = redis.call('SMISMEMBER', K_SUPP, unpack(candidates))
for i, member in ipairs(candidates) do
  if hits[i] == 1 then
    return finish('suppressed', 'suppressed', balance, 0, member)
  end
end

-- 3. Calamity lock, for the types it blocks.
if blocked_by_lock then
  local lock_until = tonumber(redis.call('GET', K_LOCK)) or 0
  if lock_until > now then
    return finish('locked', 'locked', balance, lock_until, tostring(lock_until))
  end
end

local code, detail = 'fits', ''
local own_last = nil  -- last approval at this priority (arbitration), read in step 5
if is_calamity then
  -- 4. Calamity: always approved (consent aside); spends its points and locks.
  code = 'calamity'
  if lock_ms > 0 then
    local lock_until = math.max(tonumber(redis.call('GET', K_LOCK)) or 0, now + lock_ms)
    redis.call('SET', K_LOCK, lock_until, 'PX', lock_until - now)
    detail = tostring(lock_until)
  end
else
  -- 5. Arbitration: a strictly higher priority approved within the window wins.
  --    One HMGET reads priorities p..10; field p is kept for the update in step 7.
  if arb_ms > 0 then
    local fields = {}
    for q = priority, 10 do fields[#fields + 1] = q end
    local last = redis.call('HMGET', K_ARB, unpack(fields))
    own_last = tonumber(last[1])
    local blocker, retry = 0, 0
    for i = 2, #fields do
      local at = tonumber(last[i])
      if at and at > now - arb_ms then
        blocker = fields[i]
        retry = math.max(retry, at + arb_ms)
      end
    end
    if blocker > 0 then
      return finish('capped', 'arbitration', balance, retry, tostring(blocker))
    end
  end
  -- 6. Capacity, with the priority reserve folded into `limit`.
  if exempt then
    code, detail = 'exempt', comm_type
  elseif balance + cost > limit then
    local why = (balance + cost <= capacity) and 'reserve' or 'capacity'
    local retry = 0
    if cost <= limit then
      if rolling then
        -- when enough of the oldest spends have left the window
        local need, freed = balance + cost - limit, 0
        for _, spend in ipairs(window) do
          freed = freed + spend[2]
          if freed >= need then
            retry = spend[1] + window_ms
            break
          end
        end
      else
        retry = period_end  -- the next calendar period starts empty
      end
    end
    return finish('capped', why, balance, retry, tostring(priority))
  end
end

-- 7. Approve: record the spend under the send id.
if rolling then
  redis.call('ZADD', K_SPENT, now, send_id)
else
  redis.call('INCRBY', K_SPENT, cost)
end
redis.call('HSET', K_SPENDS, send_id, spend_record)
-- TTLs are set relative to the request's `now`, so every later spend in the same period
-- aims at the same end (period end + margin, or its own time + window + margin); a late
-- redelivery with an older `now` only lengthens them. No PTTL check needed.
redis.call('PEXPIRE', K_SPENT, ttl)
redis.call('PEXPIRE', K_SPENDS, ttl)
if arb_ms > 0 and not is_calamity then
  if not own_last or now > own_last then
    redis.call('HSET', K_ARB, priority, now)
  end
  redis.call('PEXPIRE', K_ARB, arb_ms)
end
return finish('approved', code, balance + cost, 0, detail)
