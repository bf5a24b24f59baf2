-- Puts bars back into a cluster state that was just seeded (a Redis that lost its
-- data): each bar only where its series has no bar of that t yet, so a bar that a
-- tick made since the restart is never overwritten (it keeps only what came since).
-- KEYS: 1 epoch
-- ARGV: 1 the epoch seeded, then series: key, count, count members 't,o,h,l,c,v'
-- Returns the number of bars written; 0 when the epoch is no longer the one seeded.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local written, i = 0, 2
while i <= #ARGV do
  local key, count = ARGV[i], tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + count do
    local member = ARGV[j]
    local t = string.match(member, '^([^,]+),')
    if t and redis.call('ZCOUNT', key, t, t) == 0 then
      redis.call('ZADD', key, t, member)
      written = written + 1
    end
  end
  i = i + 2 + count
end
return written
