-- Accept a command in one atomic step: the user's write rate limit, the Idempotency-Key, the
-- quotas (the user's unfinished commands, all unfinished commands), the command's status record
-- (with its payload) and its stream event. Nothing is written unless the command is accepted.
--
-- KEYS[1] command record, KEYS[2] partition stream, KEYS[3] the Idempotency-Key's record (hash:
-- fp, cid, eid), KEYS[4] and KEYS[5] the user's write counters of this and the previous window,
-- KEYS[6] the user's pending set (command ids by acceptance ms), KEYS[7] the backlog counter,
-- KEYS[8] the partition's counters (stats), KEYS[9] the user's key records (list, newest first).
-- Unused keys (no Idempotency-Key, no rate limit) repeat KEYS[1] and are not touched.
-- ARGV[1] command id, ARGV[2] request fingerprint ('' when there is no Idempotency-Key),
-- ARGV[3] entity id, ARGV[4] how long the key's record is kept (s), ARGV[5] writes allowed per
-- window (0: no limit), ARGV[6] weight of the previous window (the share of it still inside the
-- sliding window), ARGV[7] counter TTL (s), ARGV[8] MAX_PENDING_PER_USER, ARGV[9] MAX_BACKLOG,
-- ARGV[10] now (ms), ARGV[11] pending set TTL (s), ARGV[12] key prefix, ARGV[13] partitions
-- whose streams the backlog counts ('' on a Redis Cluster: KEYS[2] alone, the partition's own),
-- ARGV[14] the stats field counting this accept (`acc|<collection>|<op>`; '': not counted),
-- ARGV[15] the key records kept per user (0: all; beyond it the oldest are deleted; on a Redis
-- Cluster KEYS[9] is the user's list in the partition, with its share), ARGV[16..]
-- field/value pairs of the record.
-- Returns {'accepted', stream entry id} (the command's acceptance sequence); {'limited'} when
-- the user is past the rate limit; {'replay', command id, entity id} when the key came before
-- with the same request; {'conflict'} when it came with another; {'busy'} when the user has
-- MAX_PENDING_PER_USER commands unfinished; {'backlog'} when MAX_BACKLOG are unfinished in all.
--
-- The counts heal themselves. The pending set loses a command when finish.lua finishes it
-- (ZREM: a second finish removes nothing); at the limit, its oldest members whose record is no
-- longer pending (a finish that never came, a record lost) are dropped before refusing. The
-- backlog counter goes down when finish.lua deletes a stream entry (XDEL: once per entry); at
-- the limit, and every 1024th accept, it is set again to the sum of the streams' lengths, which
-- is exactly the number of unfinished commands (an entry lives from accept to finish).
--
-- A second run of the same call (a client that resent it after a lost reply) finds its record
-- and answers {'accepted', ''} again, writing nothing: one call never queues a command twice.
--
-- Names it spells (the record's own come in ARGV; tests/test_record.py checks them):
--   entry fields: c
--   idempotency record fields: fp cid eid
--   record fields: st
--   record statuses: pending
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
local max_pending, max_backlog = tonumber(ARGV[8]), tonumber(ARGV[9])
if max_pending > 0 and redis.call('ZCARD', KEYS[6]) >= max_pending then
  -- Before refusing, drop the oldest ids whose command is no longer pending (a lost finish).
  for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, 63)) do
    local tag = '{' .. ARGV[12] .. ':' .. string.match(id, '^(%d+)-') .. '}'
    if redis.call('HGET', tag .. ':cmd:' .. id, 'st') ~= 'pending' then
      redis.call('ZREM', KEYS[6], id)
    end
  end
  if redis.call('ZCARD', KEYS[6]) >= max_pending then
    return {'busy'}
  end
end
if max_backlog > 0 then
  local backlog = tonumber(redis.call('GET', KEYS[7]) or '0')
  if backlog >= max_backlog or backlog % 1024 == 0 then
    backlog = 0
    if ARGV[13] == '' then
      backlog = redis.call('XLEN', KEYS[2])
    end
    for p = 0, (tonumber(ARGV[13]) or 0) - 1 do
      backlog = backlog + redis.call('XLEN', '{' .. ARGV[12] .. ':' .. p .. '}:stream')
    end
    redis.call('SET', KEYS[7], backlog)
  end
  if backlog >= max_backlog then
    return {'backlog'}
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 16))
local seq = redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
redis.call('INCR', KEYS[7])
redis.call('ZADD', KEYS[6], ARGV[10], ARGV[1])
redis.call('EXPIRE', KEYS[6], ARGV[11])
if ARGV[14] ~= '' then
  redis.call('HINCRBY', KEYS[8], ARGV[14], 1)
end
if keyed then
  redis.call('HSET', KEYS[3], 'fp', ARGV[2], 'cid', ARGV[1], 'eid', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('LPUSH', KEYS[9], KEYS[3])
  local kept = tonumber(ARGV[15])
  while kept > 0 and redis.call('LLEN', KEYS[9]) > kept do
    redis.call('DEL', redis.call('RPOP', KEYS[9]))
  end
  redis.call('EXPIRE', KEYS[9], ARGV[4])
end
return {'accepted', seq}
