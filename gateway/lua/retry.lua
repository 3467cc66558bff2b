-- Record a failed attempt: the command stays pending in the stream, due again at `nxt`.
-- Refused (returns 0) when the caller no longer holds the partition lease.
-- KEYS[1] lease, then the command records
-- ARGV[1] lease token, then per command: attempts, next attempt (ms), error
--
-- Names it spells (gateway/record.py; tests/test_record.py checks them):
--   record fields: st att nxt err
--   record statuses: pending
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 2, #KEYS do
  local a = 2 + 3 * (i - 2)
  if redis.call('HGET', KEYS[i], 'st') == 'pending' then
    redis.call('HSET', KEYS[i], 'att', ARGV[a], 'nxt', ARGV[a + 1], 'err', ARGV[a + 2])
  end
end
return 1
