-- Read new entries of a partition for the caller, only while it holds the partition's lease: a
-- worker that lost its lease must not take entries the new holder would then apply out of order.
-- KEYS[1] lease, KEYS[2] stream; ARGV[1] lease token, ARGV[2] group, ARGV[3] consumer, ARGV[4] count
-- Returns the entries as XREADGROUP does ([[stream, [[id, fields], ...]]]), or false without the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], '>')
