-- Seeds an empty cluster state from one instance's quotes, unless another instance
-- already did. Returns the epoch in force.
-- KEYS: 1 quotes hash, 2 sequence counter, 3 epoch
-- ARGV: 1 new epoch, then symbol, record pairs
local epoch = redis.call('GET', KEYS[3])
if epoch then
  return epoch
end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[3], ARGV[1])
return ARGV[1]
