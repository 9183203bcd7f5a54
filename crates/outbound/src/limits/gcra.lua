-- One decision of the shared rate (GCRA), atomically: reserves the next message's turn and
-- returns how long (µs) it must wait for it.
-- KEYS: tat (the theoretical arrival time, µs). ARGV: emission interval µs, tolerance µs
-- (interval * (burst - 1)).
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
-- Redis's clock, so the machines' clocks need not agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
local next_tat = tat + interval
-- %.0f: Lua's default formatting would round a µs timestamp to 14 digits.
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
  math.floor((next_tat - now) / 1000) + 1000)
return wait
