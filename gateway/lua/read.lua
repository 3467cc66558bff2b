-- Read new entries of a partition for the caller, only while it holds the partition's lease: a
-- worker that lost its lease must not take entries the new holder would then apply out of order.
-- KEYS[1] lease, KEYS[2] stream; ARGV[1] lease token, ARGV[2] group, ARGV[3] consumer, ARGV[4] count
-- Returns the entries as XREADGROUP does ([[stream, [[id, fields], ...]]]); when there are none,
-- the id of the stream's newest entry ("0-0" if none), which is delivered like every other, so
-- that the caller can wait for the ones after it; false without the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], '>')
if reply then
  return reply
end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
return newest[1] and newest[1][1] or '0-0'
