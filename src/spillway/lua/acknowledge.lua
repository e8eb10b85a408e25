#!lua
-- Acknowledge and delete a persisted batch of outbox entries, and remove the members the
-- app names from its sets, in one atomic step (redis killed between a separate XACK and
-- XDEL left acknowledged entries in the stream for good). One script call, not a MULTI
-- of a command per member: the drain's worker paid a packed command and a parsed reply
-- for each.
-- KEYS: the stream, then the set of each member to remove
-- ARGV: the group, how many entry ids follow, the entry ids, then one member per set
local stream, group, count = KEYS[1], ARGV[1], tonumber(ARGV[2])
local CHUNK = 1000 -- unpack() is bounded by Lua's stack
for first = 3, count + 2, CHUNK do
  local last = math.min(first + CHUNK - 1, count + 2)
  redis.call('XACK', stream, group, unpack(ARGV, first, last))
  redis.call('XDEL', stream, unpack(ARGV, first, last))
end
for i = 2, #KEYS do
  redis.call('SREM', KEYS[i], ARGV[count + i + 1])
end
return count
