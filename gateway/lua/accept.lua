-- Accept a command in one atomic step: the user's write rate limit, the Idempotency-Key, the
-- command's status record (with its payload) and its stream event. Nothing is written unless the
-- command is accepted.
--
-- KEYS[1] command record, KEYS[2] partition stream, KEYS[3] the Idempotency-Key's record (hash:
-- fp, cid, eid), KEYS[4] and KEYS[5] the user's write counters of this and the previous window,
-- KEYS[6] the partition's counters (stats). Unused keys (no Idempotency-Key, no rate limit)
-- repeat KEYS[1] and are not touched.
-- ARGV[1] command id, ARGV[2] request fingerprint ('' when there is no Idempotency-Key),
-- ARGV[3] entity id, ARGV[4] how long the key's record is kept (s), ARGV[5] writes allowed per
-- window (0: no limit), ARGV[6] weight of the previous window (the share of it still inside the
-- sliding window), ARGV[7] counter TTL (s), ARGV[8] the stats field counting this accept
-- (`acc|<collection>|<op>`), ARGV[9..] field/value pairs of the record.
-- Returns {'accepted', stream entry id} (the command's acceptance sequence); {'limited'} when
-- the user is past the rate limit; {'replay', command id, entity id} when the key came before
-- with the same request; {'conflict'} when it came with another.
--
-- A second run of the same call (a client that resent it after a lost reply) finds its record
-- and answers {'accepted', ''} again, writing nothing: one call never queues a command twice.
--
-- Names it spells (the record's own come in ARGV; tests/test_record.py checks them):
--   entry fields: c
--   idempotency record fields: fp cid eid
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'accepted', ''}
end

local limit = tonumber(ARGV[5])
if limit > 0 then
  local current = tonumber(redis.call('GET', KEYS[4]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[5]) or '0')
  if current + previous * tonumber(ARGV[6]) >= limit then
    return {'limited'}
  end
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end

local keyed = ARGV[2] ~= ''
if keyed then
  local first = redis.call('HMGET', KEYS[3], 'fp', 'cid', 'eid')
  if first[1] then
    if first[1] ~= ARGV[2] then
      return {'conflict'}
    end
    return {'replay', first[2], first[3]}
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
local seq = redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
if keyed then
  redis.call('HSET', KEYS[3], 'fp', ARGV[2], 'cid', ARGV[1], 'eid', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return {'accepted', seq}
