-- Forget a dead letter whose command was just accepted again: run in the same MULTI as the
-- accept script's call, after it, so that the letter goes exactly when its replay was accepted
-- (the new command's record exists) and stays when the accept refused it (a quota).
-- KEYS[1] the dead letters stream, KEYS[2] the new command's record.
-- ARGV[1] the dead letter's entry id.
-- Returns 1 when the letter was removed, 0 when the accept refused the command.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
return redis.call('XDEL', KEYS[1], ARGV[1])
