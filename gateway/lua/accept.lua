-- Accept a command atomically: its status record (with the payload) and its stream event.
-- KEYS[1] command record, KEYS[2] partition stream
-- ARGV[1] command id, ARGV[2..] field/value pairs of the record
-- Returns the stream entry id, which is the command's acceptance sequence.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
