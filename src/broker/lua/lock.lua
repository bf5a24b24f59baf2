-- Takes or renews a lock with expiry. Returns 1 when the caller holds it.
-- KEYS: 1 lock; ARGV: 1 holder, 2 expiry (ms), 3 'release' to give it up
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
