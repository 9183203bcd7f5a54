-- Gives a slot back, or leaves the queue. KEYS: holders, queue, waiting. ARGV: id.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
