-- Applies one change to the cluster's quotes and bars and publishes it, atomically.
--
-- Redis runs a script alone, so the hash of latest quotes, the bars and the order of
-- messages on the channel always agree: they are exactly the fold of every message
-- published so far, and a message's sequence number says where it falls. The quote
-- rules mirror src/domain/quote.rs (Quote::apply, Quote::roll_over) and the bar
-- rules src/store/history.rs (record, put_day) and the data file's pruning; tests
-- run both on the same ticks and compare.
--
-- Bars: one sorted set per symbol and interval, `<bars prefix><1s|1m|1d>:<SYMBOL>`,
-- scored by the bar's start `t`, member `t,o,h,l,c,v`. Keys are named here, not in
-- KEYS: this script needs one Redis, not Redis Cluster (docs/SCALING.md).
--
-- KEYS: 1 quotes hash, 2 sequence counter, 3 publisher seq hash, 4 batch marker,
--       5 trading-day marker, 6 epoch, 7 bars key prefix, 8 current trading day's t
-- ARGV: 1 origin instance, 2 channel, 3 op (ticks|rollover|upsert|remove|bars),
--       4 publisher fingerprint ('' = none), 5 epoch the caller synced with,
--       6 retention of 1 s, 1 m and daily bars in ms ('3600000,1209600000,…'),
--       7.. items
-- Returns {seq, duplicates}: seq 0 = nothing published, -1 = this batch was
-- already applied (a retry).

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

-- ---- bars -------------------------------------------------------------------------

local SECOND, MINUTE, DAY = 1, 2, 3
local INTERVAL_NAME = {'1s', '1m', '1d'}
local WIDTH = {1000, 60000}
local RETENTION = {}
do
  local parts = split(ARGV[6], ',')
  for i = SECOND, DAY do
    RETENTION[i] = tonumber(parts[i] or '')
    if not RETENTION[i] then
      return redis.error_reply('ERR retention must be three numbers, not ' .. ARGV[6])
    end
  end
end

local function decode_bar(member)
  local f = split(member, ',')
  return {t = tonumber(f[1]), o = tonumber(f[2]), h = tonumber(f[3]),
          l = tonumber(f[4]), c = tonumber(f[5]), v = tonumber(f[6])}
end

local function encode_bar(b)
  return string.format('%d,%d,%d,%d,%d,%d', b.t, b.o, b.h, b.l, b.c, b.v)
end

-- One symbol's series of one interval, as this script changes it: the bars it
-- read or made (by t), which of them changed, which are new, and the newest.
-- Found by symbol, then interval: no key is built per tick.
local series, series_by_symbol = {}, {}
local function series_of(symbol, interval)
  local of_symbol = series_by_symbol[symbol]
  if not of_symbol then
    of_symbol = {}
    series_by_symbol[symbol] = of_symbol
  end
  local s = of_symbol[interval]
  if not s then
    local key = KEYS[7] .. INTERVAL_NAME[interval] .. ':' .. symbol
    s = {key = key, interval = interval, bars = {}, changed = {}, fresh = {},
         opened = false, newest = false}
    local last = redis.call('ZRANGE', key, -1, -1)
    if last[1] then
      s.newest = decode_bar(last[1])
      s.bars[s.newest.t] = s.newest
    end
    of_symbol[interval] = s
    series[#series + 1] = s
  end
  return s
end

-- The bar starting at t, if the series still holds it.
local function bar_at(s, t)
  local bar = s.bars[t]
  if bar == nil then
    local found = redis.call('ZRANGEBYSCORE', s.key, string.format('%d', t), string.format('%d', t))
    bar = found[1] and decode_bar(found[1]) or false
    s.bars[t] = bar
  end
  return bar
end

-- A trade in the 1 s and 1 m series (history.rs `record`): the newest bar grows, a
-- later bucket starts a bar, an out-of-order trade adds volume to its own bucket
-- only if that bar is still kept and moves no price.
local function record_trade(symbol, ts, price, size, in_order)
  for interval = SECOND, MINUTE do
    local s = series_of(symbol, interval)
    local start = ts - ts % WIDTH[interval]
    local newest = s.newest
    if newest and newest.t == start then
      newest.v = newest.v + size
      if in_order then
        if price > newest.h then newest.h = price end
        if price < newest.l then newest.l = price end
        newest.c = price
      end
      s.changed[start] = true
    elseif newest and (newest.t > start or not in_order) then
      local bar = start < newest.t and bar_at(s, start)
      if bar then
        bar.v = bar.v + size
        s.changed[start] = true
      end
    elseif in_order then
      local bar = {t = start, o = price, h = price, l = price, c = price, v = size}
      s.bars[start], s.newest = bar, bar
      s.changed[start], s.fresh[start], s.opened = true, true, true
    end
  end
end

-- A whole bar (a closed trading day's, or a vendor's; history.rs `put_day` and
-- `merge`): replaces the bar of its bucket.
local function put_bar(symbol, interval, bar)
  local s = series_of(symbol, interval)
  if not bar_at(s, bar.t) then
    s.fresh[bar.t], s.opened = true, true
  end
  s.bars[bar.t] = bar
  if (not s.newest) or bar.t > s.newest.t then s.newest = bar end
  s.changed[bar.t] = true
end

-- Writes every changed bar; a series that started a bar drops those older than its
-- retention, counted back from its newest bar (as the data file does).
local function store_bars()
  for _, s in ipairs(series) do
    local key = s.key
    for t in pairs(s.changed) do
      local score = string.format('%d', t)
      if not s.fresh[t] then
        redis.call('ZREMRANGEBYSCORE', key, score, score)
      end
      redis.call('ZADD', key, score, encode_bar(s.bars[t]))
    end
    if s.opened then
      local cutoff = s.newest.t - RETENTION[s.interval]
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', cutoff))
    end
  end
end

-- ---- quotes -------------------------------------------------------------------------

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

-- A tick item, `SYMBOL,price,size,bid,bid_size,ask,ask_size,ts,seq` (empty =
-- absent), taken apart by one pattern match: splitting it into a table cost
-- several times more, and this loop is the cluster's ingest bound.
local TICK = '^([^,]+),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$'

local function apply_tick(q, symbol, price, size, bp, bs, ap, as, ts)
  local in_order = (not q[T]) or ts >= q[T]
  if price then
    record_trade(symbol, ts, price, size or 0, in_order)
    q[V] = (q[V] or 0) + (size or 0)
    if in_order then
      q[P] = price
      if not q[O] then q[O] = price end
      if (not q[H]) or price > q[H] then q[H] = price end
      if (not q[L]) or price < q[L] then q[L] = price end
    end
  end
  if not in_order then return end
  if bp then q[BP] = bp end
  if bs then q[BS] = bs end
  if ap then q[AP] = ap end
  if as then q[AS] = as end
  q[T] = ts
end

if redis.call('GET', KEYS[6]) ~= ARGV[5] then
  return redis.error_reply('EPOCH the cluster state was replaced; resynchronise')
end
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', 3600000) then
  return {-1, 0}
end

local op, publisher = ARGV[3], ARGV[4]
local published, duplicates = {}, 0

if op == 'ticks' then
  -- item: SYMBOL,price,size,bid,bid_size,ask,ask_size,ts,seq
  local last = false
  if publisher ~= '' then
    last = tonumber(redis.call('HGET', KEYS[3], publisher) or '') or false
  end
  local tonumber, match = tonumber, string.match
  for i = 7, #ARGV do
    local item = ARGV[i]
    local symbol, price, size, bp, bs, ap, as, ts, seq = match(item, TICK)
    ts, seq = tonumber(ts), tonumber(seq)
    if not ts then
      -- Unreadable (never written so by a tickstream of this version): skipped,
      -- not published, so every instance skips it too.
    elseif publisher ~= '' and seq and last and seq <= last then
      duplicates = duplicates + 1
    else
      if publisher ~= '' and seq then last = seq end
      apply_tick(load(symbol), symbol, tonumber(price), tonumber(size), tonumber(bp),
                 tonumber(bs), tonumber(ap), tonumber(as), ts)
      published[#published + 1] = item
    end
  end
  if publisher ~= '' and last then
    redis.call('HSET', KEYS[3], publisher, string.format('%d', last))
  end
  store_all()
  store_bars()
elseif op == 'rollover' then
  -- items: the new trading day's id (each day rolls over once cluster-wide), its
  -- daily bar's t, and the caller's current day's t ('' = none) for the day that
  -- ends when the cluster has not recorded one yet.
  if redis.call('GET', KEYS[5]) == ARGV[7] then
    return {0, 0}
  end
  local day = tonumber(ARGV[8])
  local ending = tonumber(redis.call('GET', KEYS[8]) or '') or tonumber(ARGV[9] or '')
  redis.call('SET', KEYS[5], ARGV[7])
  redis.call('SET', KEYS[8], ARGV[8])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local q, name = decode(all[i + 1])
    -- The day that ends becomes a daily bar if the symbol traded in it.
    if ending and day and ending < day and q[O] and q[H] and q[L] and q[P] then
      put_bar(all[i], DAY, {t = ending, o = q[O], h = q[H], l = q[L], c = q[P],
                       v = math.max(q[V] or 0, 0)})
    end
    if q[P] then q[PC] = q[P] end
    q[O], q[H], q[L], q[V] = false, false, false, 0
    redis.call('HSET', KEYS[1], all[i], encode(q, name))
  end
  store_bars()
  published[1] = ARGV[7]
elseif op == 'upsert' then
  -- item: SYMBOL,pc|name (pc and name may be empty: keep the current ones)
  for i = 7, #ARGV do
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
elseif op == 'bars' then
  -- items: 'SYMBOL,interval', then bars 't,o,h,l,c,v' (already cut off by the
  -- caller: only buckets that live trades no longer make).
  local head = split(ARGV[7], ',')
  local interval = ({['1s'] = SECOND, ['1m'] = MINUTE, ['1d'] = DAY})[head[2] or '']
  if not interval then
    return redis.error_reply('ERR unknown interval in ' .. ARGV[7])
  end
  for i = 7, #ARGV do
    if i > 7 then
      put_bar(head[1], interval, decode_bar(ARGV[i]))
    end
    published[#published + 1] = ARGV[i]
  end
  store_bars()
elseif op == 'remove' then
  for i = 7, #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
    for interval = SECOND, DAY do
      redis.call('DEL', KEYS[7] .. INTERVAL_NAME[interval] .. ':' .. ARGV[i])
    end
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
