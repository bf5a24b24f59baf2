-- The whole cluster state in one atomic read: {epoch, seq, quotes...}.
-- An empty epoch means the state is gone (a new or wiped Redis) and must be seeded.
-- KEYS: 1 quotes hash, 2 sequence counter, 3 epoch
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  return {'', '0', {}}
end
return {epoch, redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}
