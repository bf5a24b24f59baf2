-- Applies one change to the cluster's quotes and publishes it, atomically.
--
-- Redis runs a script alone, so the hash of latest quotes and the order of messages
-- on the channel always agree: the hash is exactly the fold of every message
-- published so far, and a message's sequence number says where it falls. The quote
-- rules mirror src/domain/quote.rs (Quote::apply, Quote::roll_over); a test runs
-- both on the same ticks and compares.
--
-- KEYS: 1 quotes hash, 2 sequence counter, 3 publisher seq hash, 4 batch marker,
--       5 trading-day marker, 6 epoch
-- ARGV: 1 origin instance, 2 channel, 3 op (ticks|rollover|upsert|remove),
--       4 publisher fingerprint ('' = none), 5 epoch the caller synced with,
--       6.. items
-- Returns {seq, duplicates}: seq 0 = nothing published, -1 = this batch was
-- already applied (a retry).

if redis.call('GET', KEYS[6]) ~= ARGV[5] then
  return redis.error_reply('EPOCH the cluster state was replaced; resynchronise')
end
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', 3600000) then
  return {-1, 0}
end

-- Record fields, in order: p bp bs ap as v o h l pc t, then '|' and the name.
local P, BP, BS, AP, AS, V, O, H, L, PC, T = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

local function split(text, sep)
  local out, start = {}, 1
  while true do
    local at = string.find(text, sep, start, true)
    if not at then
      out[#out + 1] = string.sub(text, start)
      return out
    end
    out[#out + 1] = string.sub(text, start, at - 1)
    start = at + 1
  end
end

local function decode(record)
  local q = {}
  local bar = string.find(record, '|', 1, true)
  local body, name = record, ''
  if bar then
    body, name = string.sub(record, 1, bar - 1), string.sub(record, bar + 1)
  end
  local fields = split(body, ',')
  for i = P, T do
    q[i] = tonumber(fields[i] or '') or false
  end
  return q, name
end

local function encode(q, name)
  local parts = {}
  for i = P, T do
    -- %d, not tostring: Lua numbers are doubles and tostring keeps 14 digits.
    parts[i] = q[i] and string.format('%d', q[i]) or ''
  end
  return table.concat(parts, ',') .. '|' .. name
end

local quotes, names = {}, {}
local function load(symbol)
  if quotes[symbol] == nil then
    local record = redis.call('HGET', KEYS[1], symbol)
    if record then
      quotes[symbol], names[symbol] = decode(record)
    else
      quotes[symbol], names[symbol] = decode(''), symbol
    end
  end
  return quotes[symbol]
end

local function store_all()
  for symbol, q in pairs(quotes) do
    redis.call('HSET', KEYS[1], symbol, encode(q, names[symbol]))
  end
end

local function apply_tick(q, f)
  local price, size, ts = tonumber(f[2]), tonumber(f[3]), tonumber(f[8])
  local in_order = (not q[T]) or ts >= q[T]
  if price then
    q[V] = (q[V] or 0) + (size or 0)
    if in_order then
      q[P] = price
      if not q[O] then q[O] = price end
      if (not q[H]) or price > q[H] then q[H] = price end
      if (not q[L]) or price < q[L] then q[L] = price end
    end
  end
  if not in_order then return end
  for field, index in pairs({[BP] = 4, [BS] = 5, [AP] = 6, [AS] = 7}) do
    local value = tonumber(f[index])
    if value then q[field] = value end
  end
  q[T] = ts
end

local op, publisher = ARGV[3], ARGV[4]
local published, duplicates = {}, 0

if op == 'ticks' then
  -- item: SYMBOL,price,size,bid,bid_size,ask,ask_size,ts,seq
  local last = false
  if publisher ~= '' then
    last = tonumber(redis.call('HGET', KEYS[3], publisher) or '') or false
  end
  for i = 6, #ARGV do
    local f = split(ARGV[i], ',')
    local seq = tonumber(f[9])
    if publisher ~= '' and seq and last and seq <= last then
      duplicates = duplicates + 1
    else
      if publisher ~= '' and seq then last = seq end
      apply_tick(load(f[1]), f)
      published[#published + 1] = ARGV[i]
    end
  end
  if publisher ~= '' and last then
    redis.call('HSET', KEYS[3], publisher, string.format('%d', last))
  end
  store_all()
elseif op == 'rollover' then
  -- item: the trading day's id; each day rolls over once cluster-wide.
  if redis.call('GET', KEYS[5]) == ARGV[6] then
    return {0, 0}
  end
  redis.call('SET', KEYS[5], ARGV[6])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local q, name = decode(all[i + 1])
    if q[P] then q[PC] = q[P] end
    q[O], q[H], q[L], q[V] = false, false, false, 0
    redis.call('HSET', KEYS[1], all[i], encode(q, name))
  end
  published[1] = ARGV[6]
elseif op == 'upsert' then
  -- item: SYMBOL,pc|name (pc and name may be empty: keep the current ones)
  for i = 6, #ARGV do
    local bar = string.find(ARGV[i], '|', 1, true)
    local head, name = string.sub(ARGV[i], 1, bar - 1), string.sub(ARGV[i], bar + 1)
    local f = split(head, ',')
    local q = load(f[1])
    local pc = tonumber(f[2])
    if pc then q[PC] = pc end
    if name ~= '' then names[f[1]] = name end
    published[#published + 1] = ARGV[i]
  end
  store_all()
elseif op == 'remove' then
  for i = 6, #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
    published[#published + 1] = ARGV[i]
  end
else
  return redis.error_reply('unknown op ' .. op)
end

if #published == 0 then
  return {0, duplicates}
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2],
  ARGV[1] .. '\n' .. seq .. '\n' .. op .. '\n' .. table.concat(published, '\n'))
return {seq, duplicates}
