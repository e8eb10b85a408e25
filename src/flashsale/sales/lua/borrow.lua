#!lua
-- Move stock out of one shard for a buyer whose home shard ran short: the only code that
-- takes stock besides reserve.lua. The units count as 'lent' until reserve.lua adds them
-- to the borrower's shard (as 'borrowed'), so at every instant
--   stock == sum(remaining + lent - borrowed) + units held by buyers.
-- It takes half of what the shard has (at least what is wanted): one borrow refills the
-- home shard for its next buyers, and the shards even out instead of ping-ponging.
-- KEYS: the lending shard's hash
-- ARGV: units wanted
local shard, want = KEYS[1], tonumber(ARGV[1])
local remaining = tonumber(redis.call('HGET', shard, 'remaining') or '0')
if remaining <= 0 then
  return 0
end
local take = math.min(remaining, math.max(want, math.floor(remaining / 2)))
redis.call('HINCRBY', shard, 'remaining', -take)
redis.call('HINCRBY', shard, 'lent', take)
return take
