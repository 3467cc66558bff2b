-- Take a partition's lease if nobody holds it. The token is new for every holder (fencing).
-- KEYS[1] lease, KEYS[2] fence counter; ARGV[1] owner name, ARGV[2] TTL (ms)
-- Returns the token, or false when the lease is held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
