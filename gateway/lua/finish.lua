-- Finish commands whose write is committed (applied) or given up (failed), in one step:
-- status, notification event, dead letter (failed), the quotas' counts, then XACK and XDEL of
-- the stream entry. Refused (returns 0) when the caller no longer holds the partition lease.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] dead-letter stream, KEYS[4] outbox (on a Redis Cluster
-- the partition's, also named as every owner's event stream: the relay writes the logs), KEYS[5] backlog
-- counter, KEYS[6] counter of trimmed dead letters, KEYS[7] the partition's counters (stats),
-- then per command: command record, and its owner's event stream, pending set and list of
-- finished records
-- ARGV[1] lease token, ARGV[2] group, ARGV[3] now (ms), ARGV[4] record TTL (s),
-- ARGV[5] events kept per user, ARGV[6] outbox length, ARGV[7] oldest dead letter kept (ms),
-- ARGV[8] dead letters kept in this partition, ARGV[9] largest payload a dead letter keeps
-- (bytes; a larger one is kept as its size and SHA-1), ARGV[10] finished records kept per user,
-- then per command:
--   entry id, command id, status, error (public message), attempts, error type, detail (the
--   store's own text, kept in the dead letter only)
-- Returns 0 without the lease, else {1, dead letters trimmed to keep the partition's share}.
--
-- Each finished command's event goes to its owner's event stream (replay by id) and, with the
-- owner and that id (and the record's request id and carried claims, when it has them), to the
-- outbox that live deliveries and notifier plugins follow. Its id
-- leaves its owner's pending set (ZREM) and the backlog counter goes down as its entry is
-- deleted (XDEL answers 1 once per entry), so a finish that runs twice counts nothing twice.
-- Its record's key joins its owner's finished list; the records beyond the newest
-- ARGV[10] are deleted (a user's status records are bounded, not only their age). Each is
-- counted in the stats (gateway/stats.py): by collection, op and status, and its
-- accept-to-finish time in the latency histogram.
--
-- Names it spells (gateway/record.py; tests/test_record.py checks them):
--   record fields: op col eid uid pl st acc fin err ety att nxt rid clm adm
--   record statuses: pending failed
--   dead letter fields: c op col eid uid pl pls pld err ety att acc at rid clm adm
--   event stream fields: e
--   outbox fields: u i e rid clm
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
-- The latency histogram's upper bounds (ms), as gateway/stats.py LATENCY_BUCKETS has them (s).
local bounds = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local function bucket(ms)
  for i, bound in ipairs(bounds) do
    if ms <= bound then return i - 1 end
  end
  return #bounds
end

local fixed, per = 7, 4
local count = (#KEYS - fixed) / per
local trimmed = 0
local kept_payload = tonumber(ARGV[9])
local records_kept = tonumber(ARGV[10])
for i = 0, count - 1 do
  local k = fixed + 1 + per * i
  local record, events, pending, finished = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local a = 11 + 7 * i
  local entry, command_id, status, err = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local attempts, error_type, detail = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local r = redis.call('HMGET', record, 'op', 'col', 'eid', 'uid', 'pl', 'st', 'acc', 'rid', 'clm', 'adm')
  local context = {}  -- the request id and carried claims, for the dead letter and the outbox
  if r[8] then table.insert(context, 'rid'); table.insert(context, r[8]) end
  if r[9] then table.insert(context, 'clm'); table.insert(context, r[9]) end
  if r[6] == 'pending' then
    if status == 'failed' then
      local payload = r[5] or ''
      local letter = {'c', command_id, 'op', r[1], 'col', r[2], 'eid', r[3], 'uid', r[4],
        'pl', payload, 'err', detail, 'ety', error_type, 'att', attempts, 'acc', r[7],
        'at', ARGV[3]}
      if #payload > kept_payload then
        letter[12] = ''
        table.insert(letter, 'pls')
        table.insert(letter, #payload)
        table.insert(letter, 'pld')
        table.insert(letter, redis.sha1hex(payload))
      end
      for _, value in ipairs(context) do table.insert(letter, value) end
      if r[10] then table.insert(letter, 'adm'); table.insert(letter, r[10]) end  -- replayed as sent
      -- Dead letters older than DEAD_LETTER_DAYS go as a new one comes (ids start with their
      -- ms), and so do the oldest beyond the partition's share of MAX_DEAD_LETTERS.
      redis.call('XADD', KEYS[3], 'MINID', ARGV[7], '*', unpack(letter))
      local over = redis.call('XLEN', KEYS[3]) - tonumber(ARGV[8])
      if over > 0 then
        redis.call('XTRIM', KEYS[3], 'MAXLEN', ARGV[8])
        trimmed = trimmed + over
      end
    end
    redis.call('HSET', record, 'st', status, 'fin', ARGV[3], 'err', err, 'ety', error_type, 'att', attempts)
    redis.call('HDEL', record, 'pl', 'nxt')
    redis.call('EXPIRE', record, ARGV[4])
    redis.call('LPUSH', finished, record)
    while redis.call('LLEN', finished) > records_kept do
      redis.call('DEL', redis.call('RPOP', finished))
    end
    redis.call('EXPIRE', finished, ARGV[4])
    local event = {type = 'command.' .. status, command_id = command_id, op = r[1],
      collection = r[2], entity_id = r[3], status = status, error = cjson.null, error_type = cjson.null}
    if err ~= '' then event.error = err end
    if error_type ~= '' then event.error_type = error_type end
    local body = cjson.encode(event)
    local event_id = ''
    if events ~= KEYS[4] then  -- else a Redis Cluster's: the relay writes the log (gateway/notify/relay.py)
      event_id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'e', body)
      redis.call('EXPIRE', events, ARGV[4])  -- a user gone quiet leaves no stream behind
    end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'u', r[4], 'i', event_id, 'e', body, unpack(context))
    local took = math.max(0, tonumber(ARGV[3]) - tonumber(r[7] or ARGV[3]))
    redis.call('HINCRBY', KEYS[7], 'fin|' .. r[2] .. '|' .. r[1] .. '|' .. status, 1)
    redis.call('HINCRBY', KEYS[7], 'lat|' .. bucket(took), 1)
    redis.call('HINCRBY', KEYS[7], 'lat_ms', took)
  end
  redis.call('ZREM', pending, command_id)
  redis.call('XACK', KEYS[2], ARGV[2], entry)
  if redis.call('XDEL', KEYS[2], entry) == 1 and tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then
    redis.call('DECR', KEYS[5])
  end
end
if trimmed > 0 then
  redis.call('INCRBY', KEYS[6], trimmed)
end
return {1, trimmed}
