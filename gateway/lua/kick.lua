-- Decide whether a drain job should be queued for a partition, and mark it queued.
-- Yes when the stream holds work, nobody holds the lease, the store is not paused, no drain is
-- queued yet, and either the retries are due or there are entries nobody has read.
-- KEYS[1] stream, KEYS[2] lease, KEYS[3] outage pause, KEYS[4] retry wait, KEYS[5] kick marker
-- ARGV[1] marker TTL (ms), ARGV[2] group, ARGV[3] "check" to answer without marking.
-- Returns 1 when the caller must queue the job (or, with "check", when work is due).
local length = redis.call('XLEN', KEYS[1])
if length == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[2])
  if ok and length <= summary[1] then
    return 0
  end
end
if ARGV[3] == 'check' then
  return 1
end
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[1]) then
  return 1
end
return 0
