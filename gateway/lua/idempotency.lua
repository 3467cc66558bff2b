-- An Idempotency-Key's record on a Redis Cluster when the command's partition is not the key's
-- (one script call reaches one slot; when the two are one, accept.lua checks the key itself).
-- The record is reserved for a command id first, that command is then accepted (accept.lua,
-- which writes a command id at most once), and the record is confirmed.
-- KEYS[1] the key's record (hash: fp, cid, eid, and w once its command is accepted), KEYS[2]
-- the user's key records in this partition (list, newest first, as accept.lua's KEYS[9])
-- ARGV[1] 'reserve', 'confirm' or 'release', ARGV[2] command id, ARGV[3] request fingerprint,
-- ARGV[4] entity id, ARGV[5] how long the record is kept (s), ARGV[6] the key records kept in
-- the list (0: all; beyond it the oldest are deleted)
-- reserve: {'reserved'} when the key is new (the record now names ARGV[2]); {'conflict'} when
--   it came before with another request; {'replay', command id, entity id, w} when it came
--   with the same one (w '1': that command was accepted; '': perhaps not yet, and the caller
--   accepts it again under that id, which queues it at most once).
-- confirm: sets w, if the record still names ARGV[2]. Returns 1 if so, else 0.
-- release: deletes the record if it names ARGV[2] and is not confirmed (its accept was refused,
--   so nothing of the request stays behind). Returns 1 if so, else 0.
--
-- Names it spells:
--   idempotency record fields: fp cid eid w
local mode = ARGV[1]
local first = redis.call('HMGET', KEYS[1], 'fp', 'cid', 'eid', 'w')
if mode == 'reserve' then
  if not first[1] then
    redis.call('HSET', KEYS[1], 'fp', ARGV[3], 'cid', ARGV[2], 'eid', ARGV[4])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('LPUSH', KEYS[2], KEYS[1])
    local kept = tonumber(ARGV[6])
    while kept > 0 and redis.call('LLEN', KEYS[2]) > kept do
      redis.call('DEL', redis.call('RPOP', KEYS[2]))
    end
    redis.call('EXPIRE', KEYS[2], ARGV[5])
    return {'reserved'}
  end
  if first[1] ~= ARGV[3] then
    return {'conflict'}
  end
  return {'replay', first[2], first[3], first[4] or ''}
end
if first[2] ~= ARGV[2] then
  return 0
end
if mode == 'confirm' then
  redis.call('HSET', KEYS[1], 'w', '1')
  return 1
end
if first[4] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
