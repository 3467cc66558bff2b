-- Finish commands whose write is committed (applied) or given up (failed), in one step:
-- status, notification event, dead letter (failed), then XACK and XDEL of the stream entry.
-- Refused (returns 0) when the caller no longer holds the partition lease.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] dead-letter stream, KEYS[4] outbox, KEYS[5] the
-- partition's counters (stats), then per command: command record, owner's event stream
-- ARGV[1] lease token, ARGV[2] group, ARGV[3] now (ms), ARGV[4] record TTL (s),
-- ARGV[5] events kept per user, ARGV[6] outbox length, ARGV[7] oldest dead letter kept (ms),
-- then per command:
--   entry id, command id, status, error, attempts
-- Each finished command's event goes to its owner's event stream (replay by id) and, with the
-- owner and that id, to the outbox that live deliveries and notifier plugins follow. Each is
-- counted in the stats (gateway/stats.py): by collection, op and status, and its accept-to-finish
-- time in the latency histogram.
--
-- Names it spells (gateway/record.py; tests/test_record.py checks them):
--   record fields: op col eid uid pl st acc fin err att nxt
--   record statuses: pending failed
--   dead letter fields: c op col eid uid pl err att acc at
--   event stream fields: e
--   outbox fields: u i e
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

local count = (#KEYS - 5) / 2
for i = 0, count - 1 do
  local record, events = KEYS[6 + 2 * i], KEYS[7 + 2 * i]
  local a = 8 + 5 * i
  local entry, command_id, status, err = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local attempts = ARGV[a + 4]
  local r = redis.call('HMGET', record, 'op', 'col', 'eid', 'uid', 'pl', 'st', 'acc')
  if r[6] == 'pending' then
    if status == 'failed' then
      -- Dead letters older than DEAD_LETTER_DAYS go as a new one comes (ids start with their ms).
      redis.call('XADD', KEYS[3], 'MINID', ARGV[7], '*', 'c', command_id, 'op', r[1], 'col', r[2],
        'eid', r[3], 'uid', r[4], 'pl', r[5] or '', 'err', err, 'att', attempts, 'acc', r[7],
        'at', ARGV[3])
    end
    redis.call('HSET', record, 'st', status, 'fin', ARGV[3], 'err', err, 'att', attempts)
    redis.call('HDEL', record, 'pl', 'nxt')
    redis.call('EXPIRE', record, ARGV[4])
    local event = {type = 'command.' .. status, command_id = command_id, op = r[1],
      collection = r[2], entity_id = r[3], status = status, error = cjson.null}
    if err ~= '' then event.error = err end
    local body = cjson.encode(event)
    local event_id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'e', body)
    redis.call('EXPIRE', events, ARGV[4])  -- a user gone quiet leaves no stream behind
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'u', r[4], 'i', event_id, 'e', body)
    local took = math.max(0, tonumber(ARGV[3]) - tonumber(r[7] or ARGV[3]))
    redis.call('HINCRBY', KEYS[5], 'fin|' .. r[2] .. '|' .. r[1] .. '|' .. status, 1)
    redis.call('HINCRBY', KEYS[5], 'lat|' .. bucket(took), 1)
    redis.call('HINCRBY', KEYS[5], 'lat_ms', took)
  end
  redis.call('XACK', KEYS[2], ARGV[2], entry)
  redis.call('XDEL', KEYS[2], entry)
end
return 1
