-- Finish commands whose write is committed (applied) or given up (failed), in one step:
-- status, notification event, dead letter (failed), then XACK and XDEL of the stream entry.
-- Refused (returns 0) when the caller no longer holds the partition lease.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] dead-letter stream, KEYS[4] outbox, then per command:
--   command record, owner's event stream
-- ARGV[1] lease token, ARGV[2] group, ARGV[3] now (ms), ARGV[4] record TTL (s),
-- ARGV[5] events kept per user, ARGV[6] outbox length, ARGV[7] oldest dead letter kept (ms),
-- then per command:
--   entry id, command id, status, error (public message), attempts, error type, detail (the
--   store's own text, kept in the dead letter only)
-- Each finished command's event goes to its owner's event stream (replay by id) and, with the
-- owner and that id, to the outbox that live deliveries and notifier plugins follow.
--
-- Names it spells (gateway/record.py; tests/test_record.py checks them):
--   record fields: op col eid uid pl st acc fin err ety att nxt
--   record statuses: pending failed
--   dead letter fields: c op col eid uid pl err ety att acc at
--   event stream fields: e
--   outbox fields: u i e
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local count = (#KEYS - 4) / 2
for i = 0, count - 1 do
  local record, events = KEYS[5 + 2 * i], KEYS[6 + 2 * i]
  local a = 8 + 7 * i
  local entry, command_id, status, err = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local attempts, error_type, detail = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local r = redis.call('HMGET', record, 'op', 'col', 'eid', 'uid', 'pl', 'st', 'acc')
  if r[6] == 'pending' then
    if status == 'failed' then
      -- Dead letters older than DEAD_LETTER_DAYS go as a new one comes (ids start with their ms).
      redis.call('XADD', KEYS[3], 'MINID', ARGV[7], '*', 'c', command_id, 'op', r[1], 'col', r[2],
        'eid', r[3], 'uid', r[4], 'pl', r[5] or '', 'err', detail, 'ety', error_type, 'att', attempts,
        'acc', r[7],
        'at', ARGV[3])
    end
    redis.call('HSET', record, 'st', status, 'fin', ARGV[3], 'err', err, 'ety', error_type, 'att', attempts)
    redis.call('HDEL', record, 'pl', 'nxt')
    redis.call('EXPIRE', record, ARGV[4])
    local event = {type = 'command.' .. status, command_id = command_id, op = r[1],
      collection = r[2], entity_id = r[3], status = status, error = cjson.null, error_type = cjson.null}
    if err ~= '' then event.error = err end
    if error_type ~= '' then event.error_type = error_type end
    local body = cjson.encode(event)
    local event_id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'e', body)
    redis.call('EXPIRE', events, ARGV[4])  -- a user gone quiet leaves no stream behind
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'u', r[4], 'i', event_id, 'e', body)
  end
  redis.call('XACK', KEYS[2], ARGV[2], entry)
  redis.call('XDEL', KEYS[2], entry)
end
return 1
