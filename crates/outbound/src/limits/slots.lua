-- One decision of the shared connection cap (a fair semaphore with leases), atomically.
-- KEYS: holders (zset id -> expiry ms), queue (zset id -> ticket), waiting (zset id -> expiry
-- ms), ticket (counter). ARGV: id, limit, lease ms, waiter ttl ms.
-- Returns {1, waiters} when `id` holds a slot (granted or renewed), {0, rank} when it waits.
local holders, queue, waiting, ticket = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local limit = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local wait_ms = tonumber(ARGV[4])
-- Redis's clock, so the machines' clocks need not agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Expired leases (a dead holder) and waiters that stopped asking drop out.
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', waiting, '-inf', now)
for _, w in ipairs(gone) do
  redis.call('ZREM', queue, w)
end
redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
local function touch()
  local ttl = math.max(lease_ms, wait_ms) * 4
  redis.call('PEXPIRE', holders, ttl)
  redis.call('PEXPIRE', queue, ttl)
  redis.call('PEXPIRE', waiting, ttl)
  redis.call('PEXPIRE', ticket, ttl)
end
if redis.call('ZSCORE', holders, id) then
  redis.call('ZADD', holders, now + lease_ms, id)
  touch()
  return {1, redis.call('ZCARD', queue)}
end
if not redis.call('ZSCORE', queue, id) then
  redis.call('ZADD', queue, redis.call('INCR', ticket), id)
end
redis.call('ZADD', waiting, now + wait_ms, id)
local free = limit - redis.call('ZCARD', holders)
local rank = redis.call('ZRANK', queue, id)
if rank < free then
  redis.call('ZREM', queue, id)
  redis.call('ZREM', waiting, id)
  redis.call('ZADD', holders, now + lease_ms, id)
  touch()
  return {1, redis.call('ZCARD', queue)}
end
touch()
return {0, rank}
