-- Accept a command atomically: its status record (with the payload) and its stream event, and,
-- when the request carried an Idempotency-Key, the key's record, checked first.
--
-- Without a key:  KEYS[1] command record, KEYS[2] partition stream
--                 ARGV[1] command id, ARGV[2..] field/value pairs of the record
--                 Returns the stream entry id, which is the command's acceptance sequence.
-- With a key:     KEYS[3] the key's record (hash: fp, cid, eid)
--                 ARGV[1] command id, ARGV[2] request fingerprint, ARGV[3] entity id,
--                 ARGV[4] how long the key's record is kept (s), ARGV[5..] field/value pairs
--                 Returns {'accepted', stream entry id}; {'replay', command id, entity id} when the
--                 key came before with the same request; {'conflict'} when it came with another.
--                 A replay or a conflict writes nothing.
if #KEYS == 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  return redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
end

local first = redis.call('HMGET', KEYS[3], 'fp', 'cid', 'eid')
if first[1] then
  if first[1] ~= ARGV[2] then
    return {'conflict'}
  end
  return {'replay', first[2], first[3]}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local seq = redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
redis.call('HSET', KEYS[3], 'fp', ARGV[2], 'cid', ARGV[1], 'eid', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {'accepted', seq}
